"""The encoder stage: texts in, float32 (n, d) L2-normalised vectors out."""

from __future__ import annotations

import importlib
import warnings
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from pie_retriever.errors import ConfigError


class Encoder(ABC):
    """Smallest surface an encoder needs: ``dim``, ``fingerprint``, ``encode`` and ``config``.

    ``prompt`` is the template applied to documents; ``query_prompt`` to queries (it defaults to ``prompt``).
    ``config()`` must return a JSON-serialisable dict with a ``type`` key registered in ``ENCODER_TYPES``
    so a saved index can rebuild the encoder.
    """

    prompt: str
    query_prompt: str

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the vectors would change (weights, prompt, pooling, truncation)."""

    @abstractmethod
    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        """Embed ``texts`` (documents, or queries when ``prompt`` is the query prompt)."""

    @abstractmethod
    def config(self) -> dict[str, Any]: ...

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        return self.encode(texts, prompt=self.query_prompt, show_progress=show_progress)

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        return self.encode(texts, prompt=self.prompt, show_progress=show_progress)


class DelegatingEncoder(Encoder):
    """An encoder that forwards everything to ``inner``; subclasses override what they change (a wrapper that
    records, serves precomputed vectors, ...). The fingerprint and config are the inner encoder's, so an index
    built through a wrapper reloads with the real encoder."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.prompt, self.query_prompt = inner.prompt, inner.query_prompt

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        return self.inner.encode(texts, prompt=prompt, show_progress=show_progress)


def check_texts(texts: Sequence[str], what: str = "text") -> list[str]:
    if isinstance(texts, str):
        msg = f"encode() takes a list of {what}s, got a single string; wrap it in a list: [{texts!r:.40}]"
        raise TypeError(msg)
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            msg = f"{what} #{i} is {type(t).__name__} ({t!r:.40}), expected a string."
            raise TypeError(msg)
    return out


def warn_if_truncated(token_ids: Sequence[Sequence[int]], max_length: int, *, stacklevel: int = 3) -> int:
    """How many tokenized inputs are longer than ``max_length``; warns once (per call) when any is.

    ``stacklevel=3`` points the warning at the code that called the encoder's ``encode``.
    """
    too_long = sum(len(ids) > max_length for ids in token_ids)
    if too_long:
        warnings.warn(
            f"{too_long} of {len(token_ids)} input(s) were longer than max_length={max_length} tokens "
            "(prompt included) and were truncated; raise max_length to keep more text.",
            stacklevel=stacklevel,
        )
    return too_long


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


ENCODER_TYPES: dict[str, str] = {
    "transformer": "pie_retriever.encoders.transformer:TransformerEncoder",
    "hashing": "pie_retriever.encoders.hashing:HashingEncoder",
    "onnx": "pie_retriever.encoders.factory:onnx_from_config",  # builds a missing alias export first
    "vllm": "pie_retriever.integrations.vllm:VLLMEncoder",
    "server": "pie_retriever.encoders.server:ServerEncoder",
}


def encoder_from_config(config: dict[str, Any]) -> Encoder:
    """Rebuild an encoder from the dict its ``config()`` returned (as stored in an index manifest)."""
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind not in ENCODER_TYPES:
        msg = f"Unknown encoder type {kind!r} in config; known types: {', '.join(ENCODER_TYPES)}."
        raise ConfigError(msg)
    module, _, name = ENCODER_TYPES[kind].partition(":")
    target = getattr(importlib.import_module(module), name)  # a class with from_config, or a function of the config
    return target.from_config(cfg) if isinstance(target, type) else target(cfg)
