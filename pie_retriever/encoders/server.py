"""An encoder over an OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM's pooling server, or any other).

The prompt is applied here, on the client (servers apply none, and the PIE prompt has text after the
instruction, which sentence-transformers prompts cannot express); the server tokenizes, runs the model and
pools. Texts are sent in batches of ``batch_size`` per request, with the retries of
:class:`~pie_retriever.encoders.http.ServerClient`. Vectors are L2-normalised here too.

The fingerprint covers the served model (its name, and what the server reports about it: ``root``,
``max_model_len``), the output dimension, prompt, query prompt, pooling and truncation, so an index built
with a served model loads only with the same served model. When the served folder is readable from here and
is a ``pie-retriever export`` folder, its card gives the pooling, the default prompt and the weights
fingerprint of the model it was exported from.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever._util import check_int
from pie_retriever.encoders.base import Encoder, check_texts, l2_normalize
from pie_retriever.encoders.export_card import EXPORT_CARD, read_export_card, source_fingerprint
from pie_retriever.encoders.http import ServerClient
from pie_retriever.encoders.prompts import apply_prompt, resolve_prompt
from pie_retriever.encoders.replies import embeddings_from_reply
from pie_retriever.errors import ConfigError, ServerError

__all__ = ["ServerEncoder"]

logger = logging.getLogger(__name__)

_PROBE = "pie-retriever dimension probe"


def _served_card(root: Any) -> dict[str, Any] | None:
    """The export card of the served folder, when the server reports a ``root`` readable from here."""
    if not isinstance(root, str) or not root:
        return None
    try:
        if not (Path(root) / EXPORT_CARD).is_file():
            return None
        card = read_export_card(root)
    except (OSError, ValueError):
        return None
    card = dict(card)
    card["_reused_fingerprint"] = source_fingerprint(root, card)
    return card


class ServerEncoder(Encoder):
    """Embed with a model served behind an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Args:
        model: the served model's name (vLLM: the ``--model`` argument, or ``--served-model-name``).
        base_url: ``http://host:port/v1`` (``/v1`` is added when missing); or pass ``client``.
        client: an ``openai.OpenAI`` client to send the requests through instead of httpx.
        api_key: bearer token (default ``$PIE_RETRIEVER_API_KEY``, then ``$OPENAI_API_KEY``); never saved.
        prompt: prompt name (``pie``, ``plain``) or template with ``{instruction}``, applied on the client;
            default: the served export's prompt when its card is readable, else ``plain``.
        query_prompt: prompt for queries; default: same as ``prompt``.
        pooling: what the server pools with, recorded in the fingerprint; default: the served export's
            pooling when its card is readable, else ``"server"`` (the server's own choice).
        batch_size: texts per request.
        timeout, max_retries, backoff: see :class:`~pie_retriever.encoders.http.ServerClient`.
        truncate_prompt_tokens: vLLM's truncation parameter, sent with every request (``-1``: truncate to the
            model's maximum length, like the in-process encoder; ``None``: send nothing, for servers that refuse
            unknown fields; then too-long texts are the server's error).
        check: ask the server at construction (``/models`` and one probe embedding) so a server that is down or
            a wrong model name fails here, with the dimension known from then on.
    """

    def __init__(self, model: str, base_url: str | None = None, *, client: Any = None, api_key: str | None = None,
                 prompt: str | None = None, query_prompt: str | None = None, pooling: str | None = None,
                 batch_size: int = 64, timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 truncate_prompt_tokens: int | None = -1, check: bool = True) -> None:
        if not isinstance(model, str) or not model.strip():
            msg = f"model must be the served model's name (see GET /v1/models), got {model!r}."
            raise ConfigError(msg)
        if client is None and base_url is None:
            msg = "ServerEncoder needs base_url='http://host:port/v1' (or client=openai.OpenAI(base_url=...))."
            raise ConfigError(msg)
        self.model = model
        self.client = ServerClient(base_url, client=client, api_key=api_key, timeout=timeout,
                                   max_retries=max_retries, backoff=backoff)
        self.batch_size = check_int(batch_size, "batch_size")
        if truncate_prompt_tokens is not None and (isinstance(truncate_prompt_tokens, bool) or not isinstance(truncate_prompt_tokens, int)
                                                   or truncate_prompt_tokens < -1 or truncate_prompt_tokens == 0):
            msg = f"truncate_prompt_tokens must be -1 (the model's maximum), a positive token count or None, got {truncate_prompt_tokens!r}."
            raise ConfigError(msg)
        self.truncate_prompt_tokens = truncate_prompt_tokens
        self._prompt_arg, self._query_prompt_arg, self._pooling_arg = prompt, query_prompt, pooling
        self.info: dict[str, Any] = {}
        self.card: dict[str, Any] | None = None
        self._dim: int | None = None
        self._fingerprint: str | None = None
        self._settle_options()
        if check:
            self.connect()

    def _settle_options(self) -> None:
        card = self.card or {}
        default_prompt = card.get("prompt") or "plain"
        self.prompt = resolve_prompt(self._prompt_arg if self._prompt_arg is not None else default_prompt)
        self.query_prompt = resolve_prompt(self._query_prompt_arg) if self._query_prompt_arg is not None else self.prompt
        pooling = self._pooling_arg if self._pooling_arg is not None else card.get("pooling") or "server"
        if not isinstance(pooling, str) or not pooling:
            msg = f"pooling must be a name such as 'mean' (recorded in the fingerprint), got {pooling!r}."
            raise ConfigError(msg)
        self.pooling = pooling

    def connect(self) -> None:
        """Check the server serves ``model``, read what it reports, and probe the output dimension."""
        self.info = self.client.model_info(self.model)
        self.card = _served_card(self.info.get("root"))
        self._settle_options()
        self._dim = int(self._embed([_PROBE]).shape[1])
        self._fingerprint = None

    # -- Encoder API ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:
            self.connect()
        return self._dim  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            if not self.info:
                self.connect()
            card = self.card or {}
            weights = card.get("_reused_fingerprint") or card.get("fingerprint", {}).get("files") or ""
            key = "|".join(str(x) for x in (
                "server", self.model, self.info.get("root"), self.info.get("max_model_len"), weights, self.dim,
                self.prompt, self.query_prompt, self.pooling, self.truncate_prompt_tokens,
            ))
            self._fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self._fingerprint

    def config(self) -> dict[str, Any]:
        return {
            "type": "server", "model": self.model, "base_url": self.client.base_url, "prompt": self.prompt,
            "query_prompt": self.query_prompt, "pooling": self.pooling, "batch_size": self.batch_size,
            "timeout": self.client.timeout, "max_retries": self.client.max_retries, "backoff": self.client.backoff,
            "truncate_prompt_tokens": self.truncate_prompt_tokens,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ServerEncoder:
        """Rebuild from a saved config; ``$PIE_RETRIEVER_BASE_URL`` overrides the saved URL (a moved server)."""
        cfg = dict(config)
        cfg.pop("type", None)
        model = cfg.pop("model")
        base_url = os.environ.get("PIE_RETRIEVER_BASE_URL") or cfg.pop("base_url", None)
        cfg.pop("base_url", None)
        return cls(model, base_url, **cfg)

    def _embed(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.truncate_prompt_tokens is not None:
            body["truncate_prompt_tokens"] = self.truncate_prompt_tokens
        answer = self.client.post("embeddings", body)
        return embeddings_from_reply(answer, len(texts), self.client.base_url + "/embeddings", self._dim)

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        template = resolve_prompt(prompt) if prompt is not None else self.prompt
        prompted = [apply_prompt(template, t) for t in texts]
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=len(prompted), desc="Encoding (server)", unit="text", disable=None if show_progress else True) as bar:
            for start in range(0, len(prompted), self.batch_size):
                batch = prompted[start:start + self.batch_size]
                parts.append(self._embed(batch))
                bar.update(len(batch))
        vectors = np.concatenate(parts)
        if self._dim is not None and vectors.shape[1] != self._dim:
            msg = f"The server returned {vectors.shape[1]}-d vectors, {self._dim}-d before; did the served model change?"
            raise ServerError(msg, url=self.client.base_url + "/embeddings")
        return l2_normalize(vectors)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"ServerEncoder(model={self.model!r}, base_url={self.client.base_url!r}, pooling={self.pooling!r})"
