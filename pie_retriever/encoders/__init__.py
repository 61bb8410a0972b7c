"""Encoders: ``Encoder`` ABC, ``TransformerEncoder`` (torch), ``OnnxEncoder`` (onnxruntime, no torch), both imported
lazily, ``HashingEncoder`` (test fake) and :func:`make_encoder`, which picks the right one for a model spec."""

from __future__ import annotations

from typing import Any

from pie_retriever.encoders.base import ENCODER_TYPES, Encoder, encoder_from_config, l2_normalize
from pie_retriever.encoders.factory import make_encoder
from pie_retriever.encoders.hashing import HashingEncoder

__all__ = ["ENCODER_TYPES", "Encoder", "HashingEncoder", "OnnxEncoder", "TransformerEncoder", "encoder_from_config",
           "l2_normalize", "make_encoder"]


def __getattr__(name: str) -> Any:
    if name == "TransformerEncoder":
        from pie_retriever.encoders.transformer import TransformerEncoder

        return TransformerEncoder
    if name == "OnnxEncoder":
        from pie_retriever.encoders.onnx import OnnxEncoder

        return OnnxEncoder
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
