"""vLLM integration: a generation wrapper with task-matched few-shot prompts, and PIE embeddings through vLLM.

Needs the ``vllm`` extra on a GPU, or ``scripts/install_vllm.sh`` (``make install-vllm``) on a CPU-only
machine. vLLM is imported only where it is used: :class:`PIEGenerator` works with any engine object and
never imports it.

- :class:`FewShotPromptBuilder` (re-exported from the core module :mod:`pie_retriever.prompting.builder`, which
  needs no framework) turns a query into a completion prompt or chat messages holding the demonstrations a
  :class:`~pie_retriever.PIERetriever` picked, within ``max_model_len - max_tokens`` tokens.
- :class:`PIEGenerator` wraps a ``vllm.LLM`` (or any object with the same ``generate``/``chat`` methods), or
  a served model: a ``base_url`` string or an ``openai.OpenAI`` client (through
  :class:`~pie_retriever.integrations.openai_server.OpenAIServerLLM`, re-exported here): one
  ``retrieve_batch`` call and one ``generate``/``chat`` call per batch of queries, and a
  :class:`GenerationResult` per query with the generated text, the demonstrations and the prompt used.
- :class:`VLLMEncoder` is a core :class:`~pie_retriever.encoders.Encoder` backed by
  ``vllm.LLM(model, runner="pooling")`` and ``LLM.embed``: decoder-based PIE embeddings from vLLM's own
  pooling runner, usable wherever the core accepts an encoder.

Only the public API of ``pie_retriever`` is used here.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from pie_retriever._util import check_choice, check_int
from pie_retriever.encoders.base import Encoder, check_texts, l2_normalize, warn_if_truncated
from pie_retriever.encoders.models import folder_fingerprint, resolve_model
from pie_retriever.encoders.prompts import apply_prompt, resolve_prompt
from pie_retriever.errors import ConfigError, PromptBudgetError, ServerError, require
from pie_retriever.integrations.openai_server import OpenAIServerLLM, is_openai_client
from pie_retriever.prompting.builder import (
    AUTO,
    ORDERS,
    FewShotPrompt,
    FewShotPromptBuilder,
    chat_user_content,
)
from pie_retriever.types import Demonstration, Hit

__all__ = [
    "ORDERS",
    "VLLM_POOLINGS",
    "FewShotPrompt",
    "FewShotPromptBuilder",
    "GenerationResult",
    "OpenAIServerLLM",
    "PIEGenerator",
    "PromptBudgetError",
    "ServerError",
    "VLLMEncoder",
    "chat_user_content",
    "cpu_llm_kwargs",
]

logger = logging.getLogger(__name__)

# vLLM sequence pooling types (``PoolerConfig.seq_pooling_type``); all read the final layer only.
VLLM_POOLINGS: dict[str, str] = {
    "last": "LAST",
    "mean": "MEAN",
    "cls": "CLS",
}


# --------------------------------------------------------------------------------------------------
# Engine helpers
# --------------------------------------------------------------------------------------------------


def _engine_model_config(llm: Any) -> Any:
    for path in (("model_config",), ("llm_engine", "model_config")):
        obj = llm
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def _vllm_on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:
        return True


def cpu_llm_kwargs(**overrides: Any) -> dict[str, Any]:
    """Engine arguments that work with vLLM on a CPU-only machine, updated with ``overrides``.

    ``dtype="float32"`` (bf16/fp16 kernels are slow or missing on many CPUs), ``enforce_eager=True`` (no
    compilation: seconds instead of minutes at start), ``max_model_len=1024`` and, unless
    ``VLLM_CPU_KVCACHE_SPACE`` is set, ``kv_cache_memory_bytes=1 GiB`` — without either, vLLM's CPU worker
    tries to reserve 92% of the machine's memory for the KV cache and refuses to start next to other processes.
    """
    kwargs: dict[str, Any] = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024}
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE") and "kv_cache_memory_bytes" not in overrides:
        kwargs["kv_cache_memory_bytes"] = 1 << 30
    kwargs.update(overrides)
    return kwargs




def _as_engine(llm: Any, model: str | None, server_options: Mapping[str, Any] | None) -> Any:
    """``llm`` itself, or a served model for a ``base_url`` string / an ``openai.OpenAI`` client."""
    options = dict(server_options or {})
    if isinstance(llm, str):
        return OpenAIServerLLM(model, base_url=llm, **options)
    if is_openai_client(llm):
        return OpenAIServerLLM(model, client=llm, **options)
    if model is not None or options:
        msg = (f"model= and server_options= are for a served model (llm given as a base_url or an openai.OpenAI client); "
               f"got an engine of type {type(llm).__name__}.")
        raise ConfigError(msg)
    return llm


def _param(sp: Any, name: str) -> Any:
    """A sampling parameter of a ``SamplingParams``-like object or a mapping of request fields."""
    return sp.get(name) if isinstance(sp, Mapping) else getattr(sp, name, None)


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


@dataclass
class GenerationResult:
    """One query's answer with everything that produced it.

    ``text`` is the first completion (``texts`` has all of them when ``n > 1``); ``few_shot`` holds the prompt
    or messages and the demonstrations; ``output`` is the engine's raw result (a vLLM ``RequestOutput``).
    """

    text: str
    few_shot: FewShotPrompt
    output: Any = None

    @property
    def query(self) -> str:
        return self.few_shot.query

    @property
    def demonstrations(self) -> list[Hit]:
        return self.few_shot.demonstrations

    @property
    def dropped(self) -> list[Hit]:
        return self.few_shot.dropped

    @property
    def prompt(self) -> str | list[dict[str, str]]:
        """The completion prompt (``generate``) or the message list (``chat``) sent to the engine."""
        return self.few_shot.engine_input

    @property
    def texts(self) -> list[str]:
        outs = getattr(self.output, "outputs", None)
        return [o.text for o in outs] if outs else [self.text]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, **self.few_shot.to_dict()}


class PIEGenerator:
    """Generate with task-matched few-shot demonstrations.

    Args:
        llm: a ``vllm.LLM`` (``runner="generate"``), or any object with ``generate(prompts, sampling_params,
            **kw)`` and ``chat(conversations, sampling_params, **kw)`` returning one result per prompt, each
            with ``.outputs[0].text``; or a served model: the server's ``base_url`` (``"http://host:port/v1"``)
            or an ``openai.OpenAI`` client (requests through :class:`OpenAIServerLLM`).
        retriever: the :class:`~pie_retriever.PIERetriever` holding the demonstration pool.
        builder: a ready :class:`FewShotPromptBuilder` (then ``retriever`` and the builder options are not used).
        tokenizer: the budget's tokenizer; default ``"auto"``: ``llm.get_tokenizer()`` when the engine has it.
        max_model_len: default ``"auto"``: the engine's ``model_config.max_model_len`` when it has one.
        stop: stop strings added to the sampling parameters of :meth:`generate` (on a copy): ``"auto"``
            (default) uses ``builder.stop``, the start of the next example such as ``"### Instruction:"``;
            ``None`` adds none. :meth:`chat` adds none (the chat template ends the assistant turn).
        model: the served model's name (with a ``base_url`` or client; default: the only one served).
        server_options: ``timeout``, ``max_retries``, ``backoff``, ``api_key``, ``max_concurrency`` of
            :class:`OpenAIServerLLM`.
        **builder_options: ``k``, ``template``, ``order``, ``max_tokens``, ``system_prompt``,
            ``chat_template_kwargs``, ``retrieve_options`` (see :class:`FewShotPromptBuilder`).

    ``generate``/``chat`` retrieve for the whole batch in one call, build the prompts within the token budget
    and call the engine once. ``max_tokens`` of the sampling parameters is the generation budget the prompt
    leaves room for; without sampling parameters the engine's defaults are used with
    ``max_tokens=builder.max_tokens``. With a served model, sampling parameters may also be a mapping of
    request fields (``{"temperature": 0, "max_tokens": 64}``); the token budget's tokenizer comes from the
    served model's name or folder when it resolves locally, else from vLLM's ``/tokenize`` (or pass
    ``tokenizer=``), and ``max_model_len`` from ``GET /v1/models``.
    """

    def __init__(self, llm: Any, retriever: Any = None, *, builder: FewShotPromptBuilder | None = None,
                 tokenizer: Any = AUTO, max_model_len: Any = AUTO, stop: Any = AUTO, model: str | None = None,
                 server_options: Mapping[str, Any] | None = None, **builder_options: Any) -> None:
        llm = _as_engine(llm, model, server_options)
        if not (hasattr(llm, "generate") or hasattr(llm, "chat")):
            msg = f"llm must be a vllm.LLM or an object with generate()/chat() methods, got {type(llm).__name__}."
            raise TypeError(msg)
        self.llm = llm
        if stop is not AUTO and stop is not None and not (
            isinstance(stop, (list, tuple)) and all(isinstance(x, str) and x for x in stop)
        ):
            msg = f"stop must be 'auto', None or a list of non-empty strings, got {stop!r}."
            raise ConfigError(msg)
        self._stop = stop
        if builder is not None:
            if retriever is not None or builder_options or tokenizer is not AUTO or max_model_len is not AUTO:
                msg = "Pass either builder=... or retriever plus builder options, not both."
                raise ConfigError(msg)
            self.builder = builder
            return
        if retriever is None:
            msg = "PIEGenerator needs a retriever (the demonstration pool) or a ready builder=FewShotPromptBuilder(...)."
            raise ConfigError(msg)
        if tokenizer is AUTO:
            getter = getattr(llm, "get_tokenizer", None)
            tokenizer = getter() if callable(getter) else None
        if max_model_len is AUTO:
            config = _engine_model_config(llm)
            max_model_len = getattr(config, "max_model_len", None) if tokenizer is not None else None
        self.builder = FewShotPromptBuilder(retriever, tokenizer=tokenizer, max_model_len=max_model_len, **builder_options)

    @classmethod
    def from_model(cls, model: str, retriever: Any, *, llm_kwargs: Mapping[str, Any] | None = None,
                   **options: Any) -> PIEGenerator:
        """Start a ``vllm.LLM`` for ``model`` (alias such as ``"smollm2"``, folder or cached hub id) and wrap it.

        ``llm_kwargs`` go to ``vllm.LLM``; on a CPU-only machine they default to :func:`cpu_llm_kwargs`.
        """
        vllm = require("vllm", "vllm", "PIEGenerator.from_model")
        path = str(resolve_model(model).path)
        kwargs = cpu_llm_kwargs(**dict(llm_kwargs or {})) if _vllm_on_cpu() else dict(llm_kwargs or {})
        return cls(vllm.LLM(model=path, **kwargs), retriever, **options)

    @property
    def stop(self) -> list[str]:
        """Stop strings added to the sampling parameters of :meth:`generate` (``"auto"``: ``builder.stop``)."""
        if self._stop is AUTO:
            return self.builder.stop
        return list(self._stop or [])

    # -- sampling parameters -------------------------------------------------------------------------
    @staticmethod
    def _with_stop(sp: Any, stop: list[str]) -> Any:
        """A copy of ``sp`` whose stop strings include ``stop`` (the caller's object is never modified)."""
        current = _param(sp, "stop")
        current = [current] if isinstance(current, str) else list(current or [])
        merged = current + [s for s in stop if s not in current]
        if merged == current:
            return sp
        if isinstance(sp, Mapping):
            return {**sp, "stop": merged}
        clone = getattr(sp, "clone", None)
        sp = clone() if callable(clone) else copy.copy(sp)
        sp.stop = merged
        # vLLM derives how much text to hold back for stop-string matching in __post_init__; keep it in step.
        if hasattr(sp, "output_text_buffer_length") and not getattr(sp, "include_stop_str_in_output", False):
            sp.output_text_buffer_length = max(len(s) for s in merged) - 1
        return sp

    def _sampling(self, sampling_params: Any, n: int, stop: list[str]) -> tuple[Any, list[int | None]]:
        """The sampling parameters to send and the generation budget of each query."""
        if sampling_params is None:
            getter = getattr(self.llm, "get_default_sampling_params", None)
            if not callable(getter):
                return None, [None] * n
            default = getter()
            if isinstance(default, Mapping):
                sampling_params = {**default, "max_tokens": self.builder.max_tokens}
            else:
                clone = getattr(default, "clone", None)
                sampling_params = clone() if callable(clone) else copy.copy(default)
                sampling_params.max_tokens = self.builder.max_tokens
        if isinstance(sampling_params, (list, tuple)):
            if len(sampling_params) != n:
                msg = f"Got {len(sampling_params)} sampling_params for {n} queries; pass one, or one per query."
                raise ConfigError(msg)
            params = [self._with_stop(sp, stop) if stop else sp for sp in sampling_params]
            return params, [_param(sp, "max_tokens") for sp in params]
        if stop:
            sampling_params = self._with_stop(sampling_params, stop)
        return sampling_params, [_param(sampling_params, "max_tokens")] * n

    def _run(self, method: str, queries: Sequence[Any], sampling_params: Any, kwargs: dict[str, Any]) -> list[GenerationResult]:
        if isinstance(queries, (str, Mapping, Demonstration)):
            queries = [queries]
        queries = list(queries)
        if not queries:
            return []
        engine_call = getattr(self.llm, method, None)
        if not callable(engine_call):
            msg = f"The engine {type(self.llm).__name__} has no {method}() method."
            raise TypeError(msg)
        params, budgets = self._sampling(sampling_params, len(queries), self.stop if method == "generate" else [])
        prompts = self.builder.build_batch(queries, chat=method == "chat", max_tokens=budgets)
        if method == "chat" and self.builder.chat_template_kwargs and "chat_template_kwargs" not in kwargs:
            kwargs["chat_template_kwargs"] = self.builder.chat_template_kwargs
        outputs = engine_call([p.engine_input for p in prompts], params, **kwargs)
        outputs = list(outputs)
        if len(outputs) != len(prompts):
            msg = f"The engine returned {len(outputs)} results for {len(prompts)} prompts."
            raise RuntimeError(msg)
        results = []
        for few_shot, out in zip(prompts, outputs):
            completions = getattr(out, "outputs", None)
            text = completions[0].text if completions else str(out)
            results.append(GenerationResult(text=text, few_shot=few_shot, output=out))
        return results

    def generate(self, queries: Sequence[Any], sampling_params: Any = None, **generate_kwargs: Any) -> list[GenerationResult]:
        """Completion prompts with retrieved demonstrations for every query; ONE ``llm.generate`` call.

        ``queries``: strings, ``(instruction, input)`` tuples, dicts or Demonstrations (a single one is
        accepted too). ``sampling_params``: one for all, one per query, or ``None``. Other keyword
        arguments (e.g. ``use_tqdm=False``) go to ``llm.generate``.
        """
        return self._run("generate", queries, sampling_params, dict(generate_kwargs))

    def chat(self, queries: Sequence[Any], sampling_params: Any = None, **chat_kwargs: Any) -> list[GenerationResult]:
        """Chat conversations (one user/assistant turn per demonstration, then the query); ONE ``llm.chat`` call."""
        return self._run("chat", queries, sampling_params, dict(chat_kwargs))

    def __repr__(self) -> str:
        return f"PIEGenerator(llm={type(self.llm).__name__}, builder={self.builder!r})"


# --------------------------------------------------------------------------------------------------
# PIE embeddings through vLLM's pooling runner
# --------------------------------------------------------------------------------------------------


class VLLMEncoder(Encoder):
    """Instruction embeddings from a decoder served by vLLM's pooling runner (``LLM(..., runner="pooling")``).

    The texts get the prompt (``"pie"``: ask for the task intention) and are tokenized with the model's own
    tokenizer (with its special tokens, like :class:`~pie_retriever.encoders.TransformerEncoder`); vLLM's
    pooler returns the final layer's state at the chosen position; vectors are L2-normalised.

    **Difference with the transformers path:** vLLM's pooler reads the *final* layer only (``LAST``, ``MEAN``,
    ``CLS``). It cannot average the last two layers, so ``pooling="last2"`` — the paper's decoder pooling and
    ``TransformerEncoder``'s default for decoders — is not available here. ``pooling="last"`` gives the same
    vectors as ``TransformerEncoder(model, pooling="last", precision="fp32")`` (cosine ≈ 1.0). Trained
    artifacts (LoRA/projection heads) are not applied either.

    Args:
        model: alias (``"smollm2"``), local folder or cached hub id of a decoder (resolved offline with
            ``pie_retriever.encoders.models.resolve_model``).
        prompt: prompt name (``"pie"``, ``"plain"``) or template with ``{instruction}``.
        query_prompt: prompt for queries; default: same as ``prompt``.
        pooling: ``"last"`` (default), ``"mean"`` or ``"cls"`` (see ``VLLM_POOLINGS``).
        normalize: L2-normalise the vectors (needed for cosine search in the retriever). ``False`` returns
            raw hidden states (vLLM's ``use_activation=False``).
        max_length: token limit per text, prompt included; longer texts are truncated (one warning per call).
        llm: an already running pooling ``vllm.LLM`` of the same model, to share it instead of starting one.
        **llm_kwargs: arguments of ``vllm.LLM``; on a CPU-only machine defaults are :func:`cpu_llm_kwargs`
            with ``max_model_len=max_length``. Saved in the index manifest when JSON-serialisable.
    """

    def __init__(
        self,
        model: str | os.PathLike = "smollm2",
        *,
        prompt: str = "pie",
        query_prompt: str | None = None,
        pooling: str = "last",
        normalize: bool = True,
        max_length: int = 256,
        llm: Any = None,
        **llm_kwargs: Any,
    ) -> None:
        if llm is None:  # fail fast, before resolving (and maybe converting) the model
            require("vllm", "vllm", "VLLMEncoder")
        if pooling == "last2":
            msg = (
                "pooling='last2' (last token averaged over the last two layers) is not available through vLLM: its "
                "pooler reads the final layer only. Use pooling='last' here, or "
                "TransformerEncoder(model, pooling='last2') for the paper's decoder pooling."
            )
            raise ConfigError(msg)
        self.pooling = check_choice("pooling", pooling, VLLM_POOLINGS)
        self.model_spec = os.fspath(model)
        self.resolved = resolve_model(self.model_spec)
        if self.resolved.artifact is not None:
            msg = (
                f"Model {self.model_spec!r} carries a trained artifact ({self.resolved.artifact}); VLLMEncoder serves the "
                "base weights only. Use TransformerEncoder for trained models."
            )
            raise ConfigError(msg)
        self.prompt = resolve_prompt(prompt)
        self.query_prompt = resolve_prompt(query_prompt) if query_prompt is not None else self.prompt
        if not isinstance(normalize, bool):
            msg = f"normalize must be True or False, got {normalize!r}."
            raise ConfigError(msg)
        self.normalize = normalize
        self.max_length = check_int(max_length, "max_length")
        self.llm_kwargs = dict(llm_kwargs)
        self.start_seconds: float | None = None
        self._fingerprint: str | None = None
        if llm is not None:
            self._adopt(llm)
        else:
            self._start()
        self.tokenizer = self.llm.get_tokenizer()
        config = _engine_model_config(self.llm)
        engine_len = getattr(config, "max_model_len", None)
        if engine_len is not None and engine_len < self.max_length:
            logger.info("max_length %d lowered to the engine's max_model_len %d", self.max_length, engine_len)
            self.max_length = int(engine_len)
        size = getattr(config, "get_hidden_size", None)
        self._dim = int(size()) if callable(size) else int(self.encode(["dimension probe"]).shape[1])

    # -- engine --------------------------------------------------------------------------------------
    def _start(self) -> None:
        vllm = require("vllm", "vllm", "VLLMEncoder")
        kwargs: dict[str, Any] = {"max_model_len": self.max_length}
        kwargs.update(self.llm_kwargs)
        if _vllm_on_cpu():
            kwargs = cpu_llm_kwargs(**kwargs)
        pooler = kwargs.pop("pooler_config", None)
        pooler = dict(pooler) if isinstance(pooler, Mapping) else {}
        pooler["seq_pooling_type"] = VLLM_POOLINGS[self.pooling]
        pooler.setdefault("use_activation", self.normalize)
        started = time.perf_counter()
        self.llm = vllm.LLM(model=str(self.resolved.path), runner="pooling", pooler_config=pooler, **kwargs)
        self.start_seconds = time.perf_counter() - started
        logger.info("vLLM pooling engine for %s started in %.1f s", self.model_spec, self.start_seconds)

    def _adopt(self, llm: Any) -> None:
        config = _engine_model_config(llm)
        runner = getattr(config, "runner_type", None)
        if runner is not None and runner != "pooling":
            msg = f"The engine given runs {runner!r}; VLLMEncoder needs vllm.LLM(model, runner='pooling')."
            raise ConfigError(msg)
        pooler = getattr(config, "pooler_config", None)
        engine_pooling = getattr(pooler, "seq_pooling_type", None) or getattr(pooler, "pooling_type", None)
        if engine_pooling is not None and str(engine_pooling).upper() != VLLM_POOLINGS[self.pooling]:
            msg = f"The engine given pools with {engine_pooling!r} but pooling={self.pooling!r} was asked for."
            raise ConfigError(msg)
        if not hasattr(llm, "embed"):
            msg = f"llm must be a vllm.LLM with embed(), got {type(llm).__name__}."
            raise TypeError(msg)
        self.llm = llm

    def close(self) -> None:
        """Shut the engine down and free its memory (the encoder cannot encode afterwards)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception as exc:
                logger.warning("Engine shutdown raised %s", exc)
        self.llm = None
        gc.collect()

    def __enter__(self) -> VLLMEncoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- Encoder API ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            weights = folder_fingerprint(self.resolved.path)
            key = f"vllm|{weights}|{self.prompt}|{self.query_prompt}|{self.pooling}|{self.normalize}|{self.max_length}"
            self._fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self._fingerprint

    def config(self) -> dict[str, Any]:
        saved = {}
        for key, value in self.llm_kwargs.items():
            try:
                json.dumps(value)
            except TypeError:
                logger.warning("llm_kwargs[%r] is not JSON-serialisable and is not saved in the config", key)
                continue
            saved[key] = value
        return {
            "type": "vllm", "model": self.model_spec, "prompt": self.prompt, "query_prompt": self.query_prompt,
            "pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length, "llm_kwargs": saved,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VLLMEncoder:
        cfg = dict(config)
        cfg.pop("type", None)
        model = cfg.pop("model")
        llm_kwargs = cfg.pop("llm_kwargs", None) or {}
        return cls(model, **cfg, **llm_kwargs)

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        texts = check_texts(texts)
        if getattr(self, "llm", None) is None:
            msg = "This VLLMEncoder was closed; create a new one."
            raise ConfigError(msg)
        if not texts:
            return np.zeros((0, getattr(self, "_dim", 0)), dtype=np.float32)
        template = resolve_prompt(prompt) if prompt is not None else self.prompt
        prompted = [apply_prompt(template, t) for t in texts]
        ids = self.tokenizer(prompted, add_special_tokens=True)["input_ids"]
        if warn_if_truncated(ids, self.max_length):
            ids = [x[: self.max_length] for x in ids]
        kwargs: dict[str, Any] = {}
        if not self.normalize:  # also right when the engine was started (or adopted) with normalisation on
            kwargs["pooling_params"] = require("vllm", "vllm", "VLLMEncoder").PoolingParams(use_activation=False)
        outs = self.llm.embed([{"prompt_token_ids": list(x)} for x in ids], use_tqdm=bool(show_progress), **kwargs)
        vectors = np.asarray([o.outputs.embedding for o in outs], dtype=np.float32)
        return l2_normalize(vectors) if self.normalize else np.ascontiguousarray(vectors)

    def __repr__(self) -> str:
        return f"VLLMEncoder(model={self.model_spec!r}, pooling={self.pooling!r}, prompt={self.prompt[:30]!r}...)"
