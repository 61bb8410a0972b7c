"""The card of an exported model folder (``pie_export.json``): what was exported, and a check of its files.

``pie-retriever export`` (:mod:`pie_retriever.encoders.export`) writes a self-contained folder plus this card::

    {"format": "pie-export", "version": 1, "export_format": "hf", "source": "pie-minilm", "base": "minilm",
     "artifact": "pie-minilm", "recipe": {...}, "prompt": "{instruction}", "prompt_name": "plain",
     "pooling": "mean", "normalize": true, "max_length": 256, "dim": 384, "kind": "encoder",
     "identical_vectors": true, "fingerprint": {"source": "<16 hex>", "files": "<64 hex>"},
     "ieb": {...} | null, "created": "...", "library_versions": {...}}

``fingerprint.source`` is the weights fingerprint of the exported model *in the package*
(:func:`pie_retriever.encoders.models.folder_fingerprint` of its base folder and artifact); ``fingerprint.files`` is
the SHA-256 over every other file of the folder as the export wrote it. When the folder still holds exactly
those bytes and the export gives identical vectors (``identical_vectors``: the weights are the in-package
merged float32 weights, bit for bit), the folder reuses the source's fingerprint, so encoders and indexes
built from the package and from the folder are interchangeable. Any edit to the folder breaks the match and
the folder is fingerprinted from its own files like any other model folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pie_retriever.errors import ArtifactError

__all__ = ["EXPORT_CARD", "EXPORT_FORMAT_NAME", "EXPORT_FORMAT_VERSION", "files_digest", "model_card_markdown", "read_export_card",
           "source_fingerprint"]

logger = logging.getLogger(__name__)

EXPORT_CARD = "pie_export.json"
EXPORT_FORMAT_NAME = "pie-export"
EXPORT_FORMAT_VERSION = 1
_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _digest_cached(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    root = Path(folder)
    h = hashlib.sha256()
    for rel, size, _ in stamp:
        h.update(f"{rel}\0{size}\0{_file_sha256(root / rel)}\n".encode())
    return h.hexdigest()


def files_digest(folder: str | os.PathLike) -> str:
    """SHA-256 over the relative path, size and content hash of every file in ``folder`` except the card.

    Cached on the files' sizes and modification times, so resolving the same folder again costs a ``stat``.
    """
    root = Path(folder).resolve()
    stamp = []
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.name != EXPORT_CARD:
            st = f.stat()
            stamp.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return _digest_cached(str(root), tuple(stamp))


def read_export_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed card of an exported folder; ArtifactError when it is not valid."""
    path = Path(folder) / EXPORT_CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        msg = f"{Path(folder)} is not an exported pie_retriever model: {EXPORT_CARD} is missing."
        raise ArtifactError(msg) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path} is not valid JSON ({exc}); re-export the model with `pie-retriever export`."
        raise ArtifactError(msg) from exc
    if not isinstance(card, dict) or card.get("format") != EXPORT_FORMAT_NAME:
        msg = f"{path} is not a pie_retriever export card (expected \"format\": \"{EXPORT_FORMAT_NAME}\")."
        raise ArtifactError(msg)
    version = card.get("version")
    if not isinstance(version, int) or version > EXPORT_FORMAT_VERSION:
        msg = f"{path} has export format version {version!r}; this pie_retriever reads up to {EXPORT_FORMAT_VERSION}. Upgrade pie-retriever."
        raise ArtifactError(msg)
    return card


def source_fingerprint(folder: str | os.PathLike, card: dict[str, Any]) -> str | None:
    """The in-package weights fingerprint this folder may reuse, or ``None``.

    ``None`` unless the card says the export gives identical vectors *and* every file is still the one the
    export wrote (a logged warning says so when files changed).
    """
    fingerprint = card.get("fingerprint") or {}
    source, expected = fingerprint.get("source"), fingerprint.get("files")
    if not card.get("identical_vectors") or not isinstance(source, str) or not isinstance(expected, str):
        return None
    actual = files_digest(folder)
    if actual != expected:
        logger.warning(
            "%s: the files changed since the export (digest %s, card %s); the folder is fingerprinted from its own "
            "files, so indexes built from %r need re-encoding.", folder, actual[:12], expected[:12], card.get("source"),
        )
        return None
    return source


def model_card_markdown(card: dict[str, Any], name: str) -> str:
    """The folder's ``README.md``: what it is, how to load it so the vectors match, and where it came from."""
    prompt_line = {
        "sentence-transformers prompts": "sentence-transformers applies the prompt itself (`default_prompt_name` in "
                                         "`config_sentence_transformers.json`): plain `model.encode(texts)` gives the "
                                         "library's vectors.",
    }.get(card.get("prompt_applied_by", ""), "**The client must apply the prompt**: format each text with the template "
                                            "below before encoding; sentence-transformers cannot (text after `{instruction}`).")
    ieb = card.get("ieb") or {}
    figures = ", ".join(f"{k} {v}" for k, v in ieb.items() if k in ("p@1", "p@4", "mrr", "ari", "iis_spearman")) or "not recorded"
    return "\n".join([
        "---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, pie-retriever, instruction-embedding]", "---", "",
        f"# {name}", "",
        f"An instruction encoder exported by `pie-retriever export` from `{card.get('source')}` (base `{card.get('base')}`): "
        "it embeds instructions by the task they ask for, for few-shot demonstration retrieval.", "",
        "```python", "from sentence_transformers import SentenceTransformer", "",
        f'model = SentenceTransformer("{name}")',
        'vectors = model.encode(["Write a haiku about the sea."])  # unit length, cosine similarity', "```", "",
        f"- Prompt `{card.get('prompt_name')}`: `{card.get('prompt')!r}`. {prompt_line}",
        f"- Pooling `{card.get('pooling')}`, {card.get('dim')}-d, normalised; max length {card.get('max_length')} tokens.",
        f"- Trained artifact: `{card.get('artifact')}`; recipe in `{EXPORT_CARD}`.",
        f"- IEB eft_test (leave-one-out): {figures}.",
        f"- vLLM: `LLM(model=\"{name}\", runner=\"pooling\")` reads `modules.json` and `1_Pooling`.",
        "", f"`{EXPORT_CARD}` holds the full card (fingerprints, library versions).", "",
    ])
