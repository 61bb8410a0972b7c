"""Encoders: ``Encoder`` ABC, ``TransformerEncoder`` (torch, imported lazily) and ``HashingEncoder`` (test fake)."""

from __future__ import annotations

from typing import Any

from .base import ENCODER_TYPES, Encoder, encoder_from_config, l2_normalize
from .hashing import HashingEncoder

__all__ = ["ENCODER_TYPES", "Encoder", "HashingEncoder", "TransformerEncoder", "encoder_from_config", "l2_normalize"]


def __getattr__(name: str) -> Any:
    if name == "TransformerEncoder":
        from .transformer import TransformerEncoder

        return TransformerEncoder
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
