"""Encoders: ``Encoder`` ABC, ``TransformerEncoder`` (torch), ``OnnxEncoder`` (onnxruntime, no torch), both imported
lazily, ``HashingEncoder`` (test fake) and :func:`make_encoder`, which picks the right one for a model spec."""

from __future__ import annotations

import os
from typing import Any

from .base import ENCODER_TYPES, Encoder, encoder_from_config, l2_normalize
from .hashing import HashingEncoder

__all__ = ["ENCODER_TYPES", "Encoder", "HashingEncoder", "OnnxEncoder", "TransformerEncoder", "encoder_from_config",
           "l2_normalize", "make_encoder"]


def make_encoder(spec: Any = None, **kwargs: Any) -> Encoder:
    """An encoder for a model spec: ``OnnxEncoder`` for an ONNX export folder (or an alias resolving to one, such
    as ``pie-minilm-onnx``), else ``TransformerEncoder``. ``spec=None`` is the library default model.

    Keyword arguments go to the chosen class; ``pooling`` and ``precision`` are fixed by an export, so asking an
    ONNX export for other values is an error.
    """
    from ..models import is_onnx_spec

    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if is_onnx_spec(spec):
        from .onnx import OnnxEncoder, check_onnx_options

        check_onnx_options(kwargs.pop("pooling", None), kwargs.pop("precision", None))
        return OnnxEncoder(spec, **kwargs)
    from .transformer import TransformerEncoder

    return TransformerEncoder(spec, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TransformerEncoder":
        from .transformer import TransformerEncoder

        return TransformerEncoder
    if name == "OnnxEncoder":
        from .onnx import OnnxEncoder

        return OnnxEncoder
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
