"""Where encoders are made: :func:`make_encoder` picks ``OnnxEncoder`` or ``TransformerEncoder`` for a model spec, and
builds an ONNX alias's export into the cache first when it is missing (the one place that does: model resolution in
:mod:`pie_retriever.encoders.models` only computes where the export lives). :func:`onnx_from_config` is the saved
encoder type ``onnx`` of ``ENCODER_TYPES``, so an index built with ``pie-minilm-lc-onnx`` reloads on a machine whose
cache is empty.
"""

from __future__ import annotations

import os
from typing import Any

from pie_retriever.encoders.base import Encoder
from pie_retriever.encoders.models import is_onnx_spec, resolve_model
from pie_retriever.errors import OnnxNotBuiltError

__all__ = ["ensure_onnx_built", "make_encoder", "onnx_from_config"]


def ensure_onnx_built(spec: Any) -> None:
    """Build the cached ONNX export behind an ONNX alias if it is not there yet (a no-op for anything else)."""
    if not isinstance(spec, str):
        return
    try:
        resolve_model(spec)
    except OnnxNotBuiltError as missing:
        from pie_retriever.encoders.onnx_export import cached_export

        cached_export(missing.source, missing.quantize)


def make_encoder(spec: Any = None, **kwargs: Any) -> Encoder:
    """An encoder for a model spec: ``OnnxEncoder`` for an ONNX export folder (or an alias resolving to one, such
    as ``pie-minilm-lc-onnx``, whose export is built into the cache at first use), else ``TransformerEncoder``.
    ``spec=None`` is the library default model.

    Keyword arguments go to the chosen class; ``pooling`` and ``precision`` are fixed by an export, so asking an
    ONNX export for other values is an error.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if is_onnx_spec(spec):
        from pie_retriever.encoders.onnx import OnnxEncoder, check_onnx_options

        check_onnx_options(kwargs.pop("pooling", None), kwargs.pop("precision", None))
        ensure_onnx_built(spec)
        return OnnxEncoder(spec, **kwargs)
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(spec, **kwargs)


def onnx_from_config(config: dict[str, Any]) -> Encoder:
    """``OnnxEncoder.from_config``, building the export of an ONNX alias first when the cache lacks it."""
    from pie_retriever.encoders.onnx import OnnxEncoder

    ensure_onnx_built(config.get("model"))
    return OnnxEncoder.from_config(config)
