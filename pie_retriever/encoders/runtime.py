"""Which runtime encodes the queries of a loaded index: torch, or an fp32 ONNX export with the same fingerprint.

An index built with a :class:`~pie_retriever.encoders.transformer.TransformerEncoder` (the default ``pie-minilm-lc``
included) stores ``type: "transformer"``. Loading it used to import torch (about 4 s) to encode one query. The fp32
ONNX export of the same weights gives the same vectors (cosine >= ``MATCH_TOLERANCE`` = 0.9999 to torch on the
probe texts, checked when the export is written) and so keeps the torch encoder's fingerprint. Hence, at load:

- ``encoder_runtime="auto"`` (default; ``$PIE_ENCODER_RUNTIME`` when the argument is ``None``): a transformer
  encoder of an *encoder* model (BERT-like; decoders keep torch) is served by :class:`TorchOnnxEncoder`, the fp32
  export in the cache folder ``onnx/fp32-<torch fingerprint>``. The export is built once, under the cache's
  file lock, with torch, the first time; afterwards a load imports no torch. When onnxruntime or tokenizers is
  missing, or the export cannot be built or does not match torch, it logs one line and uses torch as before.
- ``"onnx"``: the same, but failing instead of falling back.
- ``"torch"``: always the saved encoder class (as before).

The fingerprint is computed without torch (:func:`expected_fingerprint`: the torch encoder's formula over the
same inputs) and must equal both the manifest's and the export card's ``source_fingerprint``; anything else falls
back to torch, which then gives the usual ``EncoderMismatchError`` if the weights really changed. The export's
files are verified against the sha256 its card recorded (``OnnxEncoder``). Bulk encoding keeps torch: a call of at
least :data:`BULK_TEXTS` texts (``add()`` of a large pool to a loaded index) goes to a torch encoder built on first
need (torch fp32 273 texts/s vs ONNX fp32 181/s in batches, docs/speed.md, which pays back its ~4 s load from
about 2,000 texts on).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever._util import check_choice
from pie_retriever.encoders.models import ONNX_CARD, ResolvedModel, resolve_model, weights_fingerprint
from pie_retriever.encoders.onnx import OnnxEncoder
from pie_retriever.encoders.prompts import resolve_prompt
from pie_retriever.errors import ConfigError, EncoderMismatchError, ModelIntegrityError, PIEError, UnknownModelError

__all__ = ["BULK_TEXTS", "ENCODER_RUNTIMES", "RUNTIME_ENV", "TorchOnnxEncoder", "expected_fingerprint", "fp32_export_folder",
           "query_encoder", "resolve_runtime"]

logger = logging.getLogger(__name__)

RUNTIME_ENV = "PIE_ENCODER_RUNTIME"
ENCODER_RUNTIMES: dict[str, str] = {
    "auto": "the fp32 ONNX export (same fingerprint) for transformer encoders of encoder models, else torch",
    "torch": "the saved encoder class, as built (imports torch for transformer encoders)",
    "onnx": "the fp32 ONNX export, failing when it cannot be used",
}
#: Calls with at least this many texts are encoded by torch (faster for big batches once loaded).
BULK_TEXTS = 2048
_FAILED = ".failed.json"  # next to an export folder: why it could not be built (auto does not retry)
_logged: set[str] = set()
_build_lock = threading.Lock()


class _Fallback(Exception):
    """The ONNX path cannot serve this config (the message says why)."""


def resolve_runtime(value: str | None) -> str:
    """``value``, else ``$PIE_ENCODER_RUNTIME``, else ``"auto"``; a ConfigError for anything else."""
    if value is None:
        value = os.environ.get(RUNTIME_ENV, "").strip().lower() or "auto"
    return check_choice("encoder_runtime", value, ENCODER_RUNTIMES)


def _model_max(resolved: ResolvedModel, max_length: int) -> int:
    """The model's position limit as the torch encoder reads it (config.json ``max_position_embeddings``)."""
    try:
        config = json.loads((resolved.path / "config.json").read_text(encoding="utf-8"))
        limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    except (OSError, ValueError):
        limit = None
    return int(limit) if isinstance(limit, int) and limit > 0 else max_length


def expected_fingerprint(config: dict[str, Any]) -> tuple[str, ResolvedModel]:
    """The fingerprint a ``TransformerEncoder`` built from ``config`` (a saved ``type: transformer`` config) would
    report, computed without torch (the formula of ``TransformerEncoder._load``), and the resolved model."""
    import hashlib

    resolved = resolve_model(config["model"])
    prompt = resolve_prompt(config["prompt"] if config.get("prompt") is not None else resolved.default_prompt)
    query_prompt = resolve_prompt(config["query_prompt"]) if config.get("query_prompt") is not None else prompt
    pooling = config.get("pooling") or resolved.default_pooling
    max_length = int(config.get("max_length", 256))
    max_length = min(max_length, _model_max(resolved, max_length))
    key = f"{weights_fingerprint(resolved)}|{prompt}|{query_prompt}|{pooling}|{max_length}"
    return hashlib.sha256(key.encode()).hexdigest()[:16], resolved


def fp32_export_folder(fingerprint: str) -> Path:
    """Where the fp32 ONNX export standing in for the torch encoder of ``fingerprint`` lives in the cache. Keyed by
    the fingerprint alone (weights, prompts, pooling, max_length), so one model named by alias or by path shares it."""
    from pie_retriever._cache import cache_dir

    return cache_dir() / "onnx" / f"fp32-{fingerprint}"


class TorchOnnxEncoder(OnnxEncoder):
    """An fp32 ONNX export standing in for the ``TransformerEncoder`` of a saved config: the same fingerprint and the
    same ``config()`` (``type: "transformer"``), so a re-saved index still records the torch encoder. Calls of at
    least ``bulk_texts`` texts go to that torch encoder, built on first need."""

    def __init__(self, folder: Path, torch_config: dict[str, Any], fingerprint: str, *, bulk_texts: int = BULK_TEXTS) -> None:
        super().__init__(folder, batch_size=int(torch_config.get("batch_size") or 64))
        card = self.card
        if card.get("quantize") != "none" or not card.get("matches_source") or card.get("source_fingerprint") != fingerprint \
                or self._fingerprint != fingerprint:
            msg = (f"{folder} is not an fp32 export matching torch fingerprint {fingerprint} (quantize {card.get('quantize')!r}, "
                   f"matches_source {card.get('matches_source')!r}, source_fingerprint {card.get('source_fingerprint')!r})")
            raise _Fallback(msg)
        self.torch_config = dict(torch_config)
        self.model_spec = str(torch_config.get("model"))  # as the torch encoder's (config() is the torch one)
        self.precision = "fp32"  # what runs (auto serves fp32 configs only)
        self.bulk_texts = bulk_texts
        self._torch: Any = None
        self._torch_lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        return dict(self.torch_config)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_torch_lock", None)
        state["_torch"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._torch_lock = threading.Lock()

    def torch_encoder(self) -> Any:
        """The torch encoder of the saved config (built once, on first need; imports torch)."""
        with self._torch_lock:
            if self._torch is None:
                from pie_retriever.encoders.base import encoder_from_config

                self._torch = encoder_from_config(self.torch_config)
        return self._torch

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        if len(texts) >= self.bulk_texts and importlib.util.find_spec("torch") is not None:
            return self.torch_encoder().encode(texts, prompt=prompt, show_progress=show_progress)
        return super().encode(texts, prompt=prompt, show_progress=show_progress)


def _missing_modules(*names: str) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def _valid_export(folder: Path, config: dict[str, Any], fingerprint: str) -> TorchOnnxEncoder | None:
    if not (folder / ONNX_CARD).is_file():
        return None
    try:
        return TorchOnnxEncoder(folder, config, fingerprint)
    except UnknownModelError as exc:  # an unreadable card or a missing file (a sha256 mismatch is not caught)
        raise _Fallback(f"the cached export {folder} is unusable ({str(exc)[:200]})") from exc


def _build_export(config: dict[str, Any], folder: Path, fingerprint: str) -> None:
    """Export the torch encoder of ``config`` to fp32 ONNX into ``folder`` (under the cache's file lock)."""
    from pie_retriever._cache import file_lock

    missing = _missing_modules("torch", "onnx")
    if missing:
        raise _Fallback(f"the fp32 ONNX export is not built yet and building it needs {', '.join(missing)}")
    from pie_retriever.encoders.onnx_export import export_onnx
    from pie_retriever.encoders.transformer import TransformerEncoder

    with _build_lock, file_lock(folder.parent / f".{folder.name}.lock"):
        if (folder / ONNX_CARD).is_file():
            return
        print(f"pie_retriever: building the fp32 ONNX export of {config['model']!r} once into {folder} for torch-free "
              "queries (about 20 s; needs torch this one time)", file=sys.stderr)
        cfg = {k: v for k, v in config.items() if k != "type"}
        encoder = TransformerEncoder.from_config({**cfg, "precision": "fp32"})
        if encoder.fingerprint != fingerprint:
            raise _Fallback(f"the torch encoder's fingerprint {encoder.fingerprint} differs from {fingerprint}")
        try:
            export_onnx(encoder, folder, quantize="none", overwrite=True)
        except OSError:
            raise  # a full or read-only disk is no property of the model: not remembered, retried next time
        except (PIEError, RuntimeError, ValueError, TypeError, ImportError) as exc:  # the exporter's many ways to fail
            _write_failure(folder, f"{type(exc).__name__}: {str(exc)[:300]}")
            raise _Fallback(f"exporting failed ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _write_failure(folder: Path, reason: str) -> None:
    try:
        (folder.parent / f".{folder.name}{_FAILED}").write_text(json.dumps({"reason": reason}), encoding="utf-8")
    except OSError:
        pass


def _known_failure(folder: Path) -> str | None:
    try:
        return json.loads((folder.parent / f".{folder.name}{_FAILED}").read_text(encoding="utf-8")).get("reason")
    except (OSError, ValueError, AttributeError):
        return None


class _Policy(_Fallback):
    """``auto`` keeps torch by choice (logged at INFO, not as a failure)."""


def _check_auto_policy(config: dict[str, Any], resolved: ResolvedModel) -> None:
    """What ``auto`` leaves to torch: decoders, bf16 configs (or ``$PIE_PRECISION=bf16``), and models in the temporary
    folder (an export keyed to a folder that goes away would only pile up in the cache)."""
    import tempfile

    from pie_retriever.encoders.transformer import resolve_precision  # no torch at import

    if resolved.kind != "encoder":
        raise _Policy("decoder models keep torch under encoder_runtime='auto'")
    try:
        precision = resolve_precision(str(config.get("precision") or "fp32"))
    except PIEError as exc:
        raise _Fallback(str(exc)) from exc
    if precision != "fp32":
        raise _Policy(f"precision {precision!r} runs torch (the fp32 ONNX export serves fp32 encoders)")
    temp = Path(tempfile.gettempdir()).resolve()
    for place in (resolved.path, resolved.artifact):
        if place is not None and temp in Path(place).resolve().parents:
            raise _Policy(f"the model lies in the temporary folder {temp} (use encoder_runtime='onnx' to export it anyway)")


def _onnx_for(config: dict[str, Any], fingerprint: str, forced: bool) -> TorchOnnxEncoder:
    missing = _missing_modules("onnxruntime", "tokenizers")
    if missing:
        raise _Fallback(f"{' and '.join(missing)} not installed (pip install 'pie-retriever[onnx]')")
    try:
        expected, resolved = expected_fingerprint(config)
    except (PIEError, KeyError, TypeError, ValueError) as exc:
        raise _Fallback(f"the model cannot be resolved without torch ({type(exc).__name__}: {str(exc)[:160]})") from exc
    if "onnx" in resolved.extra or "export" in resolved.extra:
        raise _Fallback("the model is an export folder")
    if not forced:
        _check_auto_policy(config, resolved)
    if expected != fingerprint:
        if forced:
            msg = (f"encoder_runtime='onnx': the saved model's fingerprint is now {expected}, not the index's {fingerprint} "
                   "(other weights, prompt or pooling); rebuild the index.")
            raise EncoderMismatchError(msg)
        raise _Fallback(f"fingerprint {expected} computed without torch differs from the index's {fingerprint}")
    folder = fp32_export_folder(fingerprint)
    encoder = _valid_export(folder, config, fingerprint)
    if encoder is not None:
        return encoder
    failure = _known_failure(folder)
    if failure is not None and not forced:
        raise _Fallback(f"the fp32 export could not be built earlier ({failure}; delete {folder.parent} entries to retry)")
    try:
        _build_export(config, folder, fingerprint)
    except OSError as exc:  # a read-only or full cache folder: no export, torch as before
        raise _Fallback(f"cannot write the export into {folder.parent} ({exc})") from exc
    encoder = _valid_export(folder, config, fingerprint)
    if encoder is None:
        raise _Fallback(f"the export was not written to {folder}")
    return encoder


def query_encoder(config: dict[str, Any], fingerprint: str, runtime: str | None = None) -> Any:
    """The encoder a load should use for the saved ``config`` (its ``fingerprint`` from the manifest): a
    :class:`TorchOnnxEncoder`, or ``None`` for "build the saved encoder class as before" (see the module docstring).

    A corrupted export (:class:`~pie_retriever.errors.ModelIntegrityError`) is always raised, never fallen back from."""
    runtime = resolve_runtime(runtime)
    if runtime == "torch" or config.get("type") != "transformer":
        return None
    try:
        return _onnx_for(config, fingerprint, forced=runtime == "onnx")
    except ModelIntegrityError:
        raise
    except _Fallback as why:
        if runtime == "onnx":
            msg = f"encoder_runtime='onnx' cannot serve the index's {config.get('model')!r} encoder: {why}."
            raise ConfigError(msg) from None
        reason = str(why)
        if reason not in _logged:
            _logged.add(reason)
            level = logging.INFO if isinstance(why, _Policy) else logging.WARNING
            logger.log(level, "pie_retriever: queries of %r encoded with torch: %s", config.get("model"), reason)
        return None
