"""A deterministic, dependency-free encoder for tests and dry runs (not a semantic model)."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

import numpy as np

from pie_retriever.encoders.base import Encoder, check_texts, l2_normalize
from pie_retriever.encoders.prompts import resolve_prompt

_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEncoder(Encoder):
    """Hashes word unigrams into ``dim`` signed buckets. Same text → same vector, on any machine.

    Useful in unit tests (fast, no torch) and to try the pipeline; it matches words, not tasks.
    Prompt-aware like a real encoder: the words of the prompt template (everything but ``{instruction}``)
    are hashed into the vector at a quarter of the weight, so documents and queries encoded with
    different prompts get different vectors and prompt routing can be tested without a model. The
    ``plain`` template has no words of its own and leaves the vectors as the bare text's.
    """

    def __init__(self, dim: int = 64, prompt: str = "plain", query_prompt: str | None = None) -> None:
        if not isinstance(dim, int) or dim < 2:
            msg = f"HashingEncoder dim must be an int >= 2, got {dim!r}."
            raise ValueError(msg)
        self._dim = dim
        self.prompt = resolve_prompt(prompt)
        self.query_prompt = resolve_prompt(query_prompt) if query_prompt is not None else self.prompt
        self.calls = 0  # number of encode() calls, handy to check batching in tests

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        key = f"hashing:{self._dim}:{self.prompt}:{self.query_prompt}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self._dim, dtype=np.float32)
        for tok in _TOKEN.findall(text.lower()):
            d = hashlib.blake2b(tok.encode(), digest_size=8).digest()
            v[int.from_bytes(d[:4], "little") % self._dim] += 1.0 if d[4] & 1 else -1.0
        if not v.any():
            v[0] = 1.0
        return v

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        texts = check_texts(texts)
        self.calls += 1
        template = resolve_prompt(prompt) if prompt is not None else self.prompt
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = np.stack([self._vector(t) for t in texts])
        literal = template.replace("{instruction}", " ")
        if _TOKEN.search(literal.lower()):
            vectors = l2_normalize(vectors) + 0.25 * l2_normalize(self._vector(literal))
        return l2_normalize(vectors)

    def config(self) -> dict[str, Any]:
        return {"type": "hashing", "dim": self._dim, "prompt": self.prompt, "query_prompt": self.query_prompt}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HashingEncoder:
        return cls(**config)
