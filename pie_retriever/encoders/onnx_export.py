"""Export an encoder to an ONNX folder that :class:`~pie_retriever.encoders.onnx.OnnxEncoder` runs without torch.

An export folder holds:

* ``model.onnx`` — the transformer *with its pooling and projection head* (inputs ``input_ids`` and
  ``attention_mask``, output ``embedding``, not yet L2-normalised), fp32 or dynamically quantised to int8
  (``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations quantised per call);
* ``tokenizer.json`` — the fast tokenizer (run by the ``tokenizers`` library);
* ``pie_onnx.json`` — the card: source model and its weights fingerprint, prompt, query prompt, pooling,
  max_length, dim, pad id, quantisation, and the agreement with the torch encoder measured at export time.

Exporting needs torch (``torch.onnx.export``, the TorchScript exporter) and ``onnx`` + ``onnxruntime``; using the
folder needs only ``onnxruntime``, ``tokenizers`` and numpy. The command-line form is the ``onnx`` format of
``pie-retriever export`` (``EXPORT_FORMATS`` in :mod:`pie_retriever.encoders.export`):
``pie-retriever export MODEL -o DIR --format onnx [--quantize int8|none]``. :func:`cached_export` builds an export once into the cache folder (used by the
``pie-minilm-onnx`` alias: the int8 file is ~23 MB, over the 5 MB limit for tracked files, so it is built from
the packaged weights at first use instead of being shipped).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever._cache import cache_dir, file_lock
from pie_retriever._util import atomic_write_text, check_choice, library_versions
from pie_retriever.encoders.models import (
    ONNX_CARD,
    ONNX_CARD_FORMAT,
    ONNX_MODEL,
    TOKENIZER_FILE,
    onnx_cache_folder,
    onnx_files_sha256,
    weights_fingerprint,
)
from pie_retriever.errors import ConfigError, require

__all__ = ["MATCH_TOLERANCE", "ONNX_CARD", "ONNX_MODEL", "QUANTIZE", "TOKENIZER_FILE", "cache_dir", "cached_export", "export_onnx"]

#: 2: the card records ``files_sha256`` (sha256 of model.onnx and tokenizer.json), verified at every load.
CARD_VERSION = 2
QUANTIZE: dict[str, str] = {
    "int8": "dynamic int8 quantisation (onnxruntime.quantization.quantize_dynamic: QInt8 weights, per-channel scales)",
    "none": "fp32, as the torch model",
}
#: An export whose vectors have a cosine >= this to the torch encoder's on every probe text keeps the torch
#: encoder's fingerprint (its vectors are interchangeable with the torch ones: an index built with one can be
#: queried with the other). Below it, the export gets a fingerprint of its own. fp32 exports reach ~0.999999;
#: bf16 autocast, which shares the torch fingerprint, is at 0.99997; int8 exports are at ~0.99 and do not match.
MATCH_TOLERANCE = 0.9999
OPSET = 17

#: Probe texts compared between torch and ONNX at export time (short, long, with and without punctuation).
PROBE_TEXTS = (
    "Write a limerick about a cat who learns to code.",
    "Classify the sentiment of this review as positive or negative.",
    "Translate the following sentence into French: The weather is lovely today.",
    "Extract every person name mentioned in the paragraph below.",
    "Summarize the article in three bullet points.",
    "Is the following statement true or false? The moon is made of cheese.",
    "Give me a list of five healthy breakfast ideas for busy mornings, with a one-line explanation of why each is "
    "healthy and how long it takes to prepare, and end with a short shopping list that covers all of them.",
    "sort these numbers: 5, 3, 9, 1",
    "What is the capital of Australia?",
    "Rewrite this email so that it sounds more polite and professional.",
)


def _check_quantize(quantize: str | None) -> str:
    return check_choice("quantize", "none" if quantize is None else quantize, QUANTIZE)


class _PooledModel:
    """Builds the torch module that is exported: transformer → the encoder's pooling → its head."""

    @staticmethod
    def build(encoder: Any) -> Any:
        import torch

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = encoder.model
                self.head = encoder.head

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                 output_hidden_states=encoder.pooling == "last2")
                pooled = encoder.pooled(out, attention_mask)
                return self.head(pooled) if self.head is not None else pooled

        return Pooled().eval()


def _export_fp32(encoder: Any, path: Path) -> None:
    import warnings

    import torch

    module = _PooledModel.build(encoder)
    enc = encoder.tokenizer(["a short example", "a somewhat longer example text for the trace"], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about python control flow in HF code
        torch.onnx.export(
            module, (enc["input_ids"], enc["attention_mask"]), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
        )


def _quantize_int8(src: Path, dst: Path) -> None:
    require("onnx", "onnx", "Quantising an ONNX export")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weight scales: cosine to fp32 0.993 mean / 0.984 min on the bundled pool with pie-minilm, against
    # 0.968 / 0.928 per tensor, at the same speed and size (measured at export-design time; see docs/speed.md).
    root = logging.getLogger()
    hint = _DropMessage("pre-processing before quantization")  # onnxruntime's generic advice, logged on every call
    root.addFilter(hint)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(hint)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _save_tokenizer(encoder: Any, folder: Path) -> None:
    from tokenizers import Tokenizer

    backend = getattr(encoder.tokenizer, "backend_tokenizer", None)
    if backend is None:
        msg = (f"Model {encoder.model_spec!r} has no fast tokenizer (tokenizer.json); the ONNX path tokenizes with the "
               "`tokenizers` library and needs one. Convert the tokenizer to a fast one first.")
        raise ConfigError(msg)
    tok = Tokenizer.from_str(backend.to_str())
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(folder / TOKENIZER_FILE))


def _card(encoder: Any, quantize: str, weights: str, agreement: dict[str, Any], hashes: dict[str, str]) -> dict[str, Any]:
    return {
        "format": ONNX_CARD_FORMAT, "version": CARD_VERSION, "source": encoder.model_spec, "source_weights": weights,
        "source_fingerprint": encoder.fingerprint, "kind": encoder.resolved.kind, "prompt": encoder.prompt,
        "query_prompt": encoder.query_prompt, "pooling": encoder.pooling, "max_length": encoder.max_length,
        "max_positions": int(getattr(encoder.model.config, "max_position_embeddings", 0) or encoder.max_length), "dim": encoder.dim, "pad_token_id": int(encoder.tokenizer.pad_token_id), "quantize": quantize,
        "opset": OPSET, "agreement": agreement, "matches_source": agreement["cosine_min"] >= MATCH_TOLERANCE,
        "match_tolerance": MATCH_TOLERANCE, "files_sha256": hashes, "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "library_versions": library_versions(("pie-retriever", "torch", "transformers", "onnx", "onnxruntime", "tokenizers")),
    }


def _agreement(encoder: Any, folder: Path, texts: Sequence[str]) -> dict[str, Any]:
    """Token ids and vectors of the export against the torch encoder on ``texts`` (with the encoder's prompt)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*longer than max_length.*")  # both sides truncate alike
        return _compare(encoder, folder, texts)


def _compare(encoder: Any, folder: Path, texts: Sequence[str]) -> dict[str, Any]:
    from pie_retriever.encoders.onnx import OnnxEncoder
    from pie_retriever.encoders.prompts import apply_prompt

    onnx_enc = OnnxEncoder(folder)
    prompted = [apply_prompt(encoder.prompt, t) for t in texts]
    torch_ids = encoder.tokenizer(prompted, truncation=True, max_length=encoder.max_length)["input_ids"]
    onnx_ids = onnx_enc.token_ids(prompted)
    if [list(x) for x in torch_ids] != [list(x) for x in onnx_ids]:
        msg = (f"The exported tokenizer.json of {encoder.model_spec!r} does not tokenize like the transformers tokenizer "
               "(different token ids on the probe texts); this model cannot be exported to the ONNX path.")
        raise ConfigError(msg)
    precision = encoder.precision
    encoder.precision = "fp32"
    try:
        ref = encoder.encode(list(texts), show_progress=False)
    finally:
        encoder.precision = precision
    got = onnx_enc.encode(list(texts))
    cos = np.sum(ref * got, axis=1)
    return {"texts": len(texts), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "reference": "torch fp32"}


def export_onnx(model_spec: Any = None, out_dir: str | os.PathLike | None = None, quantize: str | None = "int8", *,
                prompt: str | None = None, query_prompt: str | None = None, pooling: str | None = None,
                max_length: int = 256, overwrite: bool = False, probe_texts: Sequence[str] | None = None) -> Path:
    """Export ``model_spec`` (any model spec, default the library's; or a ``TransformerEncoder``) to ``out_dir``;
    returns the folder.

    ``quantize``: ``"int8"`` (default: dynamic int8, per-channel weight scales; ~4× smaller than fp32) or
    ``None``/``"none"`` (fp32). The folder is written to a temporary sibling and renamed into place; an existing
    non-empty ``out_dir`` is replaced only with ``overwrite=True``.
    """
    quantize = _check_quantize(quantize)
    require("onnxruntime", "onnx", "Exporting to ONNX")
    require("onnx", "onnx", "Exporting to ONNX")
    from pie_retriever.encoders.transformer import TransformerEncoder

    if isinstance(model_spec, TransformerEncoder):
        encoder = model_spec
    else:
        encoder = TransformerEncoder(model_spec, prompt=prompt, query_prompt=query_prompt, pooling=pooling,
                                     max_length=max_length, precision="fp32")
    if out_dir is None or not str(out_dir).strip():
        msg = "export_onnx needs out_dir, the folder to write (e.g. export_onnx('pie-minilm', 'exported/pie-minilm-onnx'))."
        raise ConfigError(msg)
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        msg = f"Cannot export to {out}: it is a file or a non-empty folder. Pass overwrite=True (--overwrite) to replace a folder, or a new one."
        raise ConfigError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        fp32 = tmp / ("model.fp32.onnx" if quantize == "int8" else ONNX_MODEL)
        _export_fp32(encoder, fp32)
        if quantize == "int8":
            _quantize_int8(fp32, tmp / ONNX_MODEL)
            fp32.unlink()
        _save_tokenizer(encoder, tmp)
        weights = weights_fingerprint(encoder.resolved)  # the torch encoder's (an unchanged HF export reuses its source's)
        hashes = onnx_files_sha256(tmp)
        provisional = _card(encoder, quantize, weights, {"cosine_min": 0.0}, hashes)
        atomic_write_text(tmp / ONNX_CARD, json.dumps(provisional, indent=1))
        agreement = _agreement(encoder, tmp, list(probe_texts or PROBE_TEXTS))
        card = _card(encoder, quantize, weights, agreement, hashes)
        atomic_write_text(tmp / ONNX_CARD, json.dumps(card, indent=1, ensure_ascii=False))
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def cached_export(model_spec: str, quantize: str | None = "int8") -> Path:
    """The ONNX export of ``model_spec`` in the cache folder (:func:`cache_dir`), built on first use.

    The folder name carries the source weights' fingerprint, so new weights get a new export. Building takes
    about a minute and needs torch once; afterwards the folder is used without torch.
    """
    quantize = _check_quantize(quantize)
    folder = onnx_cache_folder(model_spec, quantize)
    if (folder / ONNX_CARD).is_file():
        return folder
    with file_lock(folder.parent / f".{folder.name}.lock"):
        if not (folder / ONNX_CARD).is_file():
            print(f"pie_retriever: building the ONNX {quantize} export of {model_spec!r} once into {folder} "
                  "(about a minute; needs torch this one time)", file=sys.stderr)
            export_onnx(model_spec, folder, quantize=quantize, overwrite=True)
    return folder
