"""Generation against an OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``, or any other).

:class:`OpenAIServerLLM` gives a served model the two methods :class:`~pie_retriever.integrations.vllm.PIEGenerator`
calls on a ``vllm.LLM`` — ``generate(prompts, sampling_params)`` and ``chat(conversations, sampling_params)`` —
plus ``get_tokenizer()`` and ``model_config.max_model_len`` for the token budget. So the generator's one batched
path serves both: one ``retrieve_batch``, then

* ``generate``: ONE ``POST /v1/completions`` with the list of prompts (one request per distinct set of
  sampling parameters when they differ per query);
* ``chat``: one ``POST /v1/chat/completions`` per conversation (the API takes one), sent concurrently.

Requests go through :class:`~pie_retriever.encoders.http.ServerClient` (httpx, or an ``openai.OpenAI`` client you
pass): retries with backoff on connection errors, timeouts and HTTP 429/5xx, and a clear
:class:`~pie_retriever.errors.ServerError` when the server is down.

The budget's tokenizer: the served model name or its ``root`` when either resolves to a local folder or alias
(:func:`pie_retriever.encoders.models.resolve_model`), else vLLM's ``/tokenize`` endpoint (exact, one request per
count), else none (no budget; a warning says how to pass one).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

from pie_retriever._util import check_int
from pie_retriever.encoders.http import ServerClient
from pie_retriever.errors import ConfigError, ServerError, UnknownModelError

__all__ = ["SAMPLING_FIELDS", "CompletionOutput", "OpenAIServerLLM", "ServerOutput", "ServerTokenizer", "is_openai_client",
           "sampling_body"]

logger = logging.getLogger(__name__)

#: Sampling fields sent to the server: OpenAI's, then vLLM's extensions (sent only when not at their default).
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "seed", "n", "presence_penalty", "frequency_penalty")
_VLLM_EXTENSIONS = {"top_k": (0, -1, None), "min_p": (0.0, None), "repetition_penalty": (1.0, None), "min_tokens": (0, None)}
_ENGINE_ONLY_KWARGS = ("use_tqdm", "lora_request", "priority")


@dataclass
class CompletionOutput:
    """One completion, shaped like vLLM's ``CompletionOutput`` (``text``, ``finish_reason``)."""

    text: str
    finish_reason: str | None = None
    index: int = 0


@dataclass
class ServerOutput:
    """One prompt's answer, shaped like vLLM's ``RequestOutput``: ``outputs[0].text`` is the completion."""

    outputs: list[CompletionOutput]
    prompt: Any = None
    usage: dict[str, Any] = field(default_factory=dict)
    raw: Any = None


def is_openai_client(obj: Any) -> bool:
    """True for an ``openai.OpenAI`` client (or one shaped like it: ``base_url``, ``post``, ``completions``, ``chat``)."""
    return all(hasattr(obj, a) for a in ("base_url", "post", "completions", "chat")) and not hasattr(obj, "generate")


def sampling_body(sp: Any) -> dict[str, Any]:
    """Request fields from a ``vllm.SamplingParams``, a mapping of OpenAI fields, or ``None``."""
    if sp is None:
        return {}
    if isinstance(sp, Mapping):
        return {k: v for k, v in sp.items() if v is not None}
    body = {name: getattr(sp, name) for name in SAMPLING_FIELDS if getattr(sp, name, None) is not None}
    for name, defaults in _VLLM_EXTENSIONS.items():
        value = getattr(sp, name, None)
        if value not in defaults:
            body[name] = value
    if "stop" in body:
        body["stop"] = list(body["stop"]) if not isinstance(body["stop"], str) else [body["stop"]]
        if not body["stop"]:
            del body["stop"]
    return body


class ServerTokenizer:
    """Counts tokens with vLLM's ``/tokenize`` endpoint (exactly as the server will): ``encode`` and
    ``apply_chat_template(..., tokenize=True)`` return token ids. One request per call."""

    def __init__(self, client: ServerClient, model: str) -> None:
        self.client, self.model = client, model

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        answer = self.client.post(self.client.root_url + "/tokenize",
                                  {"model": self.model, "prompt": text, "add_special_tokens": add_special_tokens})
        return list(answer["tokens"])

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], tokenize: bool = True,
                            add_generation_prompt: bool = True, **chat_template_kwargs: Any) -> list[int]:
        if not tokenize:
            msg = "ServerTokenizer only counts tokens (tokenize=True)."
            raise ConfigError(msg)
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "add_generation_prompt": add_generation_prompt}
        if chat_template_kwargs:
            body["chat_template_kwargs"] = chat_template_kwargs
        return list(self.client.post(self.client.root_url + "/tokenize", body)["tokens"])

    def __repr__(self) -> str:
        return f"ServerTokenizer({self.client.root_url}/tokenize, model={self.model!r})"


class OpenAIServerLLM:
    """A served LLM with the ``generate``/``chat`` surface of ``vllm.LLM`` (what ``PIEGenerator`` needs).

    Args:
        model: the served model's name; default: the only model the server serves.
        base_url: ``http://host:port/v1`` (``/v1`` is added when missing); or pass ``client``.
        client: an ``openai.OpenAI`` client to send the requests through.
        api_key, timeout, max_retries, backoff: see :class:`~pie_retriever.encoders.http.ServerClient`.
        max_concurrency: chat requests in flight at once (completions go in one request).
    """

    def __init__(self, model: str | None = None, base_url: str | None = None, *, client: Any = None, api_key: str | None = None,
                 timeout: float = 300.0, max_retries: int = 3, backoff: float = 0.5, max_concurrency: int = 8) -> None:
        if client is None and base_url is None:
            msg = "OpenAIServerLLM needs base_url='http://host:port/v1' or client=openai.OpenAI(base_url=...)."
            raise ConfigError(msg)
        self.server = ServerClient(base_url, client=client, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff)
        self.max_concurrency = check_int(max_concurrency, "max_concurrency")
        self.model, self.info = self._pick_model(model)
        self.model_config = SimpleNamespace(max_model_len=self.info.get("max_model_len"), runner_type="generate")
        self._tokenizer: Any = None

    def _pick_model(self, model: str | None) -> tuple[str, dict[str, Any]]:
        if model is not None:
            return model, self.server.model_info(model)
        rows = self.server.models()
        if len(rows) != 1:
            served = ", ".join(repr(r.get("id")) for r in rows) or "(none)"
            msg = f"The server at {self.server.base_url} serves {len(rows)} models ({served}); pass model= to pick one."
            raise ConfigError(msg)
        return str(rows[0]["id"]), rows[0]

    # -- tokenizer -------------------------------------------------------------------------------------
    def _local_tokenizer(self) -> Any:
        """A tokenizer from the served model's name or root, when one resolves to a local folder or alias."""
        from pie_retriever.encoders.models import resolve_model

        for spec in dict.fromkeys([self.model, self.info.get("root")]):
            if not isinstance(spec, str) or not spec:
                continue
            try:
                path = resolve_model(spec).path
            except (UnknownModelError, OSError, ValueError):
                continue
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(path))
        return None

    def get_tokenizer(self) -> Any:
        """The tokenizer that measures prompts for the token budget (cached; see the module docstring).

        ``PIEGenerator(..., tokenizer=<alias or folder>)`` overrides it."""
        if self._tokenizer is not None:
            return self._tokenizer
        tokenizer = self._local_tokenizer()
        if tokenizer is None:
            probe = ServerTokenizer(self.server, self.model)
            try:
                probe.encode("probe")
                tokenizer = probe
            except ServerError as exc:
                logger.warning("No tokenizer for %r (not a local folder, and %s); prompts get no token budget. Pass "
                               "tokenizer=<model alias or folder> to PIEGenerator.", self.model, exc)
        self._tokenizer = tokenizer
        return tokenizer

    def get_default_sampling_params(self) -> dict[str, Any]:
        return {}

    # -- requests --------------------------------------------------------------------------------------
    @staticmethod
    def _extra(kwargs: Mapping[str, Any]) -> dict[str, Any]:
        extra = {k: v for k, v in kwargs.items() if k not in _ENGINE_ONLY_KWARGS}
        body = dict(extra.pop("extra_body", None) or {})
        if "chat_template_kwargs" in extra:
            body["chat_template_kwargs"] = extra.pop("chat_template_kwargs")
        if extra:
            msg = f"Unknown arguments for a server request: {sorted(extra)}; pass server fields in extra_body={{...}}."
            raise ConfigError(msg)
        return body

    @staticmethod
    def _per_prompt(sampling_params: Any, n: int) -> list[dict[str, Any]]:
        if isinstance(sampling_params, (list, tuple)):
            if len(sampling_params) != n:
                msg = f"Got {len(sampling_params)} sampling_params for {n} prompts; pass one, or one per prompt."
                raise ConfigError(msg)
            return [sampling_body(sp) for sp in sampling_params]
        return [sampling_body(sampling_params)] * n

    def generate(self, prompts: Sequence[str] | str, sampling_params: Any = None, **kwargs: Any) -> list[ServerOutput]:
        """Completions for ``prompts``: one ``POST /v1/completions`` per distinct set of sampling parameters."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        extra = self._extra(kwargs)
        bodies = self._per_prompt(sampling_params, len(prompts))
        groups: dict[str, list[int]] = {}
        for i, body in enumerate(bodies):
            groups.setdefault(repr(sorted(body.items())), []).append(i)
        results: list[ServerOutput | None] = [None] * len(prompts)
        for idx in groups.values():
            body = {**bodies[idx[0]], **extra, "model": self.model, "prompt": [prompts[i] for i in idx]}
            for i, out in zip(idx, self._completions(body, len(idx))):
                out.prompt = prompts[i]
                results[i] = out
        return results  # type: ignore[return-value]

    def _completions(self, body: dict[str, Any], count: int) -> list[ServerOutput]:
        answer = self.server.post("completions", body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        n = int(body.get("n") or 1)
        if not isinstance(choices, list) or len(choices) != count * n:
            got = len(choices) if isinstance(choices, list) else type(choices).__name__
            msg = f"POST {self.server.base_url}/completions returned {got} choices for {count} prompts × n={n}."
            raise ServerError(msg, url=self.server.base_url + "/completions")
        outs = [ServerOutput(outputs=[], usage=answer.get("usage") or {}, raw=answer) for _ in range(count)]
        for choice in sorted(choices, key=lambda c: c.get("index", 0)):
            prompt_i, j = divmod(int(choice.get("index", 0)), n)
            outs[prompt_i].outputs.append(CompletionOutput(choice.get("text") or "", choice.get("finish_reason"), j))
        return outs

    def _chat_one(self, body: dict[str, Any]) -> ServerOutput:
        answer = self.server.post("chat/completions", body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices:
            msg = f"POST {self.server.base_url}/chat/completions returned no choices: {str(answer)[:120]!r}."
            raise ServerError(msg, url=self.server.base_url + "/chat/completions")
        outputs = [CompletionOutput((c.get("message") or {}).get("content") or "", c.get("finish_reason"), int(c.get("index", 0)))
                   for c in sorted(choices, key=lambda c: c.get("index", 0))]
        return ServerOutput(outputs=outputs, prompt=body["messages"], usage=answer.get("usage") or {}, raw=answer)

    def chat(self, conversations: Sequence[Sequence[Mapping[str, str]]], sampling_params: Any = None, **kwargs: Any) -> list[ServerOutput]:
        """Chat completions: one ``POST /v1/chat/completions`` per conversation, ``max_concurrency`` at a time."""
        conversations = list(conversations)
        if conversations and isinstance(conversations[0], Mapping):  # a single conversation
            conversations = [conversations]
        extra = self._extra(kwargs)
        bodies = [{**b, **extra, "model": self.model, "messages": list(c)}
                  for b, c in zip(self._per_prompt(sampling_params, len(conversations)), conversations)]
        if len(bodies) <= 1:
            return [self._chat_one(b) for b in bodies]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies))) as pool:
            return list(pool.map(self._chat_one, bodies))

    def close(self) -> None:
        self.server.close()

    def __repr__(self) -> str:
        return f"OpenAIServerLLM(model={self.model!r}, base_url={self.server.base_url!r})"
