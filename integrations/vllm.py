"""vLLM integration: task-matched few-shot prompts, a generation wrapper, and PIE embeddings through vLLM.

Needs the ``vllm`` extra on a GPU, or ``scripts/install_vllm.sh`` (``make install-vllm``) on a CPU-only
machine. vLLM is imported only where it is used: :class:`FewShotPromptBuilder` and :class:`PIEGenerator`
work with any engine object and never import it.

- :class:`FewShotPromptBuilder` turns a query into a completion prompt (Alpaca-style by default) or a list of
  chat messages holding the demonstrations a :class:`~pie_retriever.PIERetriever` picked. It keeps the prompt
  within ``max_model_len - max_tokens`` tokens of the target model's tokenizer by dropping the lowest-ranked
  demonstrations whole, never cutting one in half.
- :class:`PIEGenerator` wraps a ``vllm.LLM`` (or any object with the same ``generate``/``chat`` methods):
  one ``retrieve_batch`` call and one ``LLM.generate``/``LLM.chat`` call per batch of queries, and a
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
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pie_retriever.encoders.base import Encoder, check_texts, l2_normalize
from pie_retriever.errors import PIEError, require
from pie_retriever.fewshot import TEMPLATES, format_few_shot
from pie_retriever.models import folder_fingerprint, resolve_model
from pie_retriever.prompts import apply_prompt, resolve_prompt
from pie_retriever.types import Demonstration, Hit

__all__ = [
    "ORDERS",
    "VLLM_POOLINGS",
    "FewShotPrompt",
    "FewShotPromptBuilder",
    "GenerationResult",
    "PIEGenerator",
    "PromptBudgetError",
    "VLLMEncoder",
    "cpu_llm_kwargs",
]

logger = logging.getLogger(__name__)

ORDERS: dict[str, str] = {
    "most_similar_last": "best match right before the query (default; the model reads it last)",
    "most_similar_first": "best match first, right after the header",
}

# vLLM sequence pooling types (``PoolerConfig.seq_pooling_type``); all read the final layer only.
VLLM_POOLINGS: dict[str, str] = {
    "last": "LAST",
    "mean": "MEAN",
    "cls": "CLS",
}

# Keys a custom completion template given as a mapping must have (the shape of ``pie_retriever.fewshot.TEMPLATES``).
TEMPLATE_KEYS = ("header", "example", "input_block", "separator")

_AUTO: Any = "auto"


class PromptBudgetError(PIEError, ValueError):
    """Even the zero-shot prompt (no demonstration) does not fit ``max_model_len - max_tokens`` tokens."""


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        what = "a non-negative" if allow_zero else "a positive"
        msg = f"{name} must be {what} integer, got {value!r}."
        raise ValueError(msg)
    return int(value)


def _check_choice(name: str, value: Any, registry: Mapping[str, str]) -> str:
    if value not in registry:
        msg = f"Unknown {name} {value!r}; choose one of: {', '.join(registry)}."
        raise ValueError(msg)
    return value


def _as_query(query: Any, query_input: str = "") -> tuple[str, str]:
    """A query given as a string (plus ``query_input``), a dict ``{instruction, input?}`` or a Demonstration."""
    if isinstance(query, str):
        instruction, text_input = query, query_input
    elif isinstance(query, Demonstration):
        instruction, text_input = query.instruction, query.input or query_input
    elif isinstance(query, Mapping):
        if "instruction" not in query:
            msg = f"A query dict needs an 'instruction' key (keys: {sorted(query)})."
            raise ValueError(msg)
        instruction, text_input = query["instruction"], query.get("input") or query_input
    else:
        msg = f"A query must be a string, a dict {{'instruction', 'input'?}} or a Demonstration, got {type(query).__name__}."
        raise TypeError(msg)
    if not isinstance(instruction, str) or not instruction.strip():
        msg = f"The query instruction must be a non-empty string, got {instruction!r:.60}."
        raise ValueError(msg)
    if text_input is None:
        text_input = ""
    if not isinstance(text_input, str):
        msg = f"query_input must be a string, got {type(text_input).__name__}."
        raise TypeError(msg)
    return instruction, text_input


def _token_ids(encoded: Any) -> list[int]:
    """``apply_chat_template(tokenize=True)`` returns a list in transformers 4 and a BatchEncoding in 5."""
    if isinstance(encoded, Mapping) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if encoded and isinstance(encoded[0], list):  # a batch of one
        encoded = encoded[0]
    return list(encoded)


def _load_tokenizer(spec: Any) -> Any:
    """A tokenizer object from ``None`` / an object with ``encode`` / a model alias, folder or cached hub id."""
    if isinstance(spec, (str, os.PathLike)):  # before the encode() check: str has an encode() method too
        from transformers import AutoTokenizer

        resolved = resolve_model(spec)
        return AutoTokenizer.from_pretrained(str(resolved.path))
    if spec is None or hasattr(spec, "encode"):
        return spec
    msg = (
        f"tokenizer must be None, a model alias/folder/hub id, or a tokenizer object with an encode() method "
        f"(e.g. `llm.get_tokenizer()`), got {type(spec).__name__}."
    )
    raise TypeError(msg)


def chat_user_content(instruction: str, query_input: str = "") -> str:
    """The user message for an instruction: the instruction, then its input after a blank line when given."""
    return f"{instruction}\n\n{query_input}" if query_input else instruction


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
    except Exception:  # noqa: BLE001 - any failure: assume a CPU-only machine, the safe defaults
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


# --------------------------------------------------------------------------------------------------
# Few-shot prompts
# --------------------------------------------------------------------------------------------------


@dataclass
class FewShotPrompt:
    """A built prompt and the demonstrations in it.

    Attributes:
        query, query_input: the instruction the prompt asks for, and its input context.
        prompt: the completion prompt (``build``), else ``None``.
        messages: the chat messages (``build_chat``), else ``None``.
        demonstrations: the hits that made it into the prompt, best match first (``hit.rank`` is the
            retrieval rank, ``hit.score`` the cosine score, ``hit.demonstration`` the example).
        dropped: retrieved hits left out to fit the token budget (always the lowest-ranked ones).
        num_tokens: prompt length in tokens of the builder's tokenizer (``None`` without a tokenizer).
    """

    query: str
    query_input: str = ""
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    demonstrations: list[Hit] = field(default_factory=list)
    dropped: list[Hit] = field(default_factory=list)
    num_tokens: int | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def engine_input(self) -> str | list[dict[str, str]]:
        """What goes to ``LLM.generate`` (the prompt string) or ``LLM.chat`` (the message list)."""
        return self.messages if self.messages is not None else self.prompt  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "query_input": self.query_input,
            "prompt": self.prompt,
            "messages": self.messages,
            "demonstrations": [h.to_dict() for h in self.demonstrations],
            "dropped": [h.to_dict() for h in self.dropped],
            "num_tokens": self.num_tokens,
        }


TemplateSpec = str | Mapping[str, str] | Callable[[Sequence[Demonstration], str, str], str]


class FewShotPromptBuilder:
    """Build few-shot prompts from the demonstrations a :class:`~pie_retriever.PIERetriever` picks.

    Args:
        retriever: the demonstration pool.
        k: demonstrations to retrieve per query (fewer end up in the prompt when the budget is tight).
        template: completion format: a name from ``pie_retriever.fewshot.TEMPLATES`` (``"alpaca"``, the
            default, or ``"plain"``); a mapping with the same keys (``header``, ``example`` with
            ``{instruction}``, ``{input_block}`` and ``{output}``, ``input_block`` with ``{input}``,
            ``separator``); or a callable ``(demonstrations, query, query_input) -> str``.
        order: ``"most_similar_last"`` (default) or ``"most_similar_first"`` (see ``ORDERS``).
        tokenizer: the target model's tokenizer, to measure the prompt: ``None`` (no budget), a tokenizer
            object (``llm.get_tokenizer()`` or a Hugging Face tokenizer), or a model alias/folder/hub id
            loaded with ``AutoTokenizer``.
        max_model_len: the engine's context length; with it, prompts are kept within
            ``max_model_len - max_tokens`` tokens. Needs ``tokenizer``.
        max_tokens: the generation budget reserved for the answer.
        system_prompt: optional system message at the top of chat prompts (``build_chat``).
        chat_template_kwargs: passed to ``tokenizer.apply_chat_template`` when counting chat tokens (and by
            :class:`PIEGenerator` to ``LLM.chat``), e.g. ``{"enable_thinking": False}``.
        retrieve_options: extra arguments of ``PIERetriever.retrieve_batch`` (``filter``, ``min_score``,
            ``mmr``, ``mmr_lambda``, ``fetch_k``).
    """

    def __init__(
        self,
        retriever: Any,
        *,
        k: int = 4,
        template: TemplateSpec = "alpaca",
        order: str = "most_similar_last",
        tokenizer: Any = None,
        max_model_len: int | None = None,
        max_tokens: int = 256,
        system_prompt: str | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        retrieve_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not hasattr(retriever, "retrieve_batch"):
            msg = f"retriever must be a PIERetriever (or have retrieve_batch()), got {type(retriever).__name__}."
            raise TypeError(msg)
        self.retriever = retriever
        self.k = _check_positive_int(k, "k")
        self.template = self._check_template(template)
        self.order = _check_choice("order", order, ORDERS)
        self.tokenizer = _load_tokenizer(tokenizer)
        self.max_tokens = _check_positive_int(max_tokens, "max_tokens", allow_zero=True)
        if max_model_len is not None:
            max_model_len = _check_positive_int(max_model_len, "max_model_len")
            if self.tokenizer is None:
                msg = (
                    "max_model_len needs a tokenizer to measure prompts: pass tokenizer=<model alias or folder> or "
                    "tokenizer=llm.get_tokenizer() (PIEGenerator does that for you)."
                )
                raise ValueError(msg)
            if self.max_tokens >= max_model_len:
                msg = f"max_tokens={self.max_tokens} leaves no room for a prompt within max_model_len={max_model_len}."
                raise ValueError(msg)
        self.max_model_len = max_model_len
        if system_prompt is not None and not isinstance(system_prompt, str):
            msg = f"system_prompt must be a string or None, got {type(system_prompt).__name__}."
            raise TypeError(msg)
        self.system_prompt = system_prompt
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        options = dict(retrieve_options or {})
        allowed = {"filter", "min_score", "mmr", "mmr_lambda", "fetch_k"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            msg = f"Unknown retrieve_options {unknown}; valid: {sorted(allowed)}."
            raise ValueError(msg)
        self.retrieve_options = options

    # -- configuration -------------------------------------------------------------------------------
    @staticmethod
    def _check_template(template: Any) -> TemplateSpec:
        if isinstance(template, str):
            if template not in TEMPLATES:
                msg = (
                    f"Unknown few-shot template {template!r}; choose one of: {', '.join(TEMPLATES)}, or pass a mapping "
                    f"with keys {list(TEMPLATE_KEYS)} or a callable (demonstrations, query, query_input) -> str."
                )
                raise ValueError(msg)
            return template
        if isinstance(template, Mapping):
            missing = [key for key in TEMPLATE_KEYS if key not in template]
            unknown = sorted(set(template) - set(TEMPLATE_KEYS))
            if missing or unknown:
                msg = f"A template mapping needs exactly the keys {list(TEMPLATE_KEYS)}; missing {missing}, unknown {unknown}."
                raise ValueError(msg)
            spec = {key: template[key] for key in TEMPLATE_KEYS}
            # Validate the placeholders now, with a dummy demonstration, rather than at the first query.
            try:
                _format_with_spec(spec, [Demonstration("i", "x", "o")], "q", "y")
            except (KeyError, IndexError, ValueError) as exc:
                msg = (
                    f"Invalid template mapping ({type(exc).__name__}: {exc}). 'example' may use {{instruction}}, "
                    "{input_block} and {output}; 'input_block' may use {input}; escape literal braces as '{{' and '}}'."
                )
                raise ValueError(msg) from exc
            return spec
        if callable(template):
            return template
        msg = f"template must be a name ({', '.join(TEMPLATES)}), a mapping or a callable, got {type(template).__name__}."
        raise TypeError(msg)

    @property
    def stop(self) -> list[str]:
        """Stop strings for completion prompts: the start of the next example (``"\\n\\n### Instruction:"``, then
        ``"### Instruction:"`` for Alpaca), so a small model does not go on inventing more examples. The longer
        string comes first so the separator is cut too. Empty for callable templates."""
        if callable(self.template) and not isinstance(self.template, (str, Mapping)):
            return []
        spec = TEMPLATES[self.template] if isinstance(self.template, str) else self.template
        prefix = spec["example"].split("{instruction}", 1)[0].strip()
        if not prefix:
            return []
        separated = spec["separator"] + prefix
        return [separated, prefix] if separated != prefix else [prefix]

    @property
    def budget(self) -> int | None:
        """Tokens the prompt may use (``max_model_len - max_tokens``), or ``None`` without a budget."""
        return None if self.max_model_len is None else self.max_model_len - self.max_tokens

    # -- rendering (no retrieval) --------------------------------------------------------------------
    def _ordered(self, hits: Sequence[Hit | Demonstration]) -> list[Demonstration]:
        demos = [h.demonstration if isinstance(h, Hit) else h for h in hits]
        return demos[::-1] if self.order == "most_similar_last" else demos

    def render(self, hits: Sequence[Hit | Demonstration], query: str, query_input: str = "") -> str:
        """The completion prompt for ``hits`` (best first) and the query, without retrieval or budget."""
        demos = self._ordered(hits)
        if isinstance(self.template, str):
            return format_few_shot(demos, query, query_input, self.template)
        if isinstance(self.template, Mapping):
            return _format_with_spec(self.template, demos, query, query_input)
        text = self.template(demos, query, query_input)
        if not isinstance(text, str):
            msg = f"The template callable returned {type(text).__name__}, expected a string."
            raise TypeError(msg)
        return text

    def render_chat(self, hits: Sequence[Hit | Demonstration], query: str, query_input: str = "", *,
                    system_prompt: Any = _AUTO) -> list[dict[str, str]]:
        """Chat messages: optional system message, one user/assistant turn per demonstration, then the query."""
        system = self.system_prompt if system_prompt is _AUTO else system_prompt
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        for demo in self._ordered(hits):
            messages.append({"role": "user", "content": chat_user_content(demo.instruction, demo.input)})
            messages.append({"role": "assistant", "content": demo.output})
        messages.append({"role": "user", "content": chat_user_content(query, query_input)})
        return messages

    # -- token counting ------------------------------------------------------------------------------
    def count_tokens(self, prompt: str | list[dict[str, str]]) -> int:
        """Prompt length with the builder's tokenizer, as vLLM will see it.

        A string is encoded with the tokenizer's special tokens (what ``LLM.generate`` does); a message list
        is rendered and tokenized by ``apply_chat_template(..., add_generation_prompt=True)`` (what
        ``LLM.chat`` does).
        """
        tok = self.tokenizer
        if tok is None:
            msg = "This builder has no tokenizer; pass tokenizer=... to count tokens."
            raise ValueError(msg)
        if isinstance(prompt, str):
            return len(tok.encode(prompt))
        if not hasattr(tok, "apply_chat_template"):
            msg = f"The tokenizer {type(tok).__name__} has no apply_chat_template(); chat prompts cannot be measured."
            raise TypeError(msg)
        ids = tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, **self.chat_template_kwargs)
        return len(_token_ids(ids))

    # -- building ------------------------------------------------------------------------------------
    def retrieve(self, queries: Sequence[Any]) -> list[list[Hit]]:
        """Demonstrations for every query with ONE ``retrieve_batch`` call (queries as in :meth:`build_batch`)."""
        parsed = [_as_query(q) for q in queries]
        return self._retrieve(parsed)

    def _retrieve(self, parsed: Sequence[tuple[str, str]]) -> list[list[Hit]]:
        if not parsed:
            return []
        fields = tuple(getattr(self.retriever, "embed_fields", ("instruction",)))
        # Embed the query the way the pool was embedded (instruction, plus input if the pool includes inputs).
        texts = [Demonstration(q, i).text(fields) or q for q, i in parsed]
        return self.retriever.retrieve_batch(texts, self.k, **self.retrieve_options)

    def _fit(self, hits: list[Hit], query: str, query_input: str, *, chat: bool, max_tokens: int | None,
             system_prompt: Any) -> FewShotPrompt:
        def render(n: int) -> Any:
            if chat:
                return self.render_chat(hits[:n], query, query_input, system_prompt=system_prompt)
            return self.render(hits[:n], query, query_input)

        reserve = self.max_tokens if max_tokens is None else _check_positive_int(max_tokens, "max_tokens", allow_zero=True)
        budget = None if self.max_model_len is None else self.max_model_len - reserve
        if budget is not None and budget <= 0:
            msg = f"max_tokens={reserve} leaves no room for a prompt within max_model_len={self.max_model_len}."
            raise PromptBudgetError(msg)
        # Drop the lowest-ranked demonstrations, whole, until the prompt fits: try all first (the usual case).
        for n in range(len(hits), -1, -1):
            rendered = render(n)
            num_tokens = self.count_tokens(rendered) if self.tokenizer is not None else None
            if budget is None or num_tokens <= budget:  # type: ignore[operator]
                return FewShotPrompt(
                    query=query, query_input=query_input,
                    prompt=None if chat else rendered, messages=rendered if chat else None,
                    demonstrations=list(hits[:n]), dropped=list(hits[n:]), num_tokens=num_tokens,
                )
        msg = (
            f"The prompt for query {query!r:.80} does not fit even without demonstrations: {num_tokens} tokens, "
            f"but max_model_len={self.max_model_len} minus max_tokens={reserve} leaves {budget}. Shorten the query "
            "or its input, lower max_tokens, or raise max_model_len (the engine's too)."
        )
        raise PromptBudgetError(msg)

    def build(self, query: str | Mapping[str, Any] | Demonstration, query_input: str = "", *,
              max_tokens: int | None = None) -> FewShotPrompt:
        """Retrieve demonstrations for ``query`` and return the completion prompt (``.prompt``) with them.

        ``max_tokens`` overrides the builder's generation budget for this call.
        """
        return self.build_batch([_as_query(query, query_input)], max_tokens=max_tokens)[0]

    def build_chat(self, query: str | Mapping[str, Any] | Demonstration, query_input: str = "", *,
                   max_tokens: int | None = None, system_prompt: Any = _AUTO) -> FewShotPrompt:
        """Like :meth:`build` but returns chat messages (``.messages``) for ``LLM.chat``."""
        return self.build_batch([_as_query(query, query_input)], chat=True, max_tokens=max_tokens,
                                system_prompt=system_prompt)[0]

    def build_batch(self, queries: Sequence[Any], *, chat: bool = False, max_tokens: int | Sequence[int | None] | None = None,
                    system_prompt: Any = _AUTO) -> list[FewShotPrompt]:
        """Prompts for many queries, retrieving for all of them in one ``retrieve_batch`` call.

        ``queries``: strings, ``(instruction, input)`` pairs, dicts ``{instruction, input?}`` or
        Demonstrations. ``chat=True`` builds message lists. ``max_tokens``: one budget or one per query.
        """
        if isinstance(queries, (str, Mapping, Demonstration)):
            msg = "build_batch() takes a list of queries; use build() or build_chat() for a single query."
            raise TypeError(msg)
        parsed = [_as_query(*q) if isinstance(q, tuple) else _as_query(q) for q in queries]
        if isinstance(max_tokens, (list, tuple)):
            if len(max_tokens) != len(parsed):
                msg = f"max_tokens has {len(max_tokens)} entries for {len(parsed)} queries."
                raise ValueError(msg)
            budgets = list(max_tokens)
        else:
            budgets = [max_tokens] * len(parsed)
        hits = self._retrieve(parsed)
        return [
            self._fit(list(h), q, i, chat=chat, max_tokens=b, system_prompt=system_prompt)
            for (q, i), h, b in zip(parsed, hits, budgets)
        ]

    def __repr__(self) -> str:
        template = self.template if isinstance(self.template, str) else type(self.template).__name__
        return (f"FewShotPromptBuilder(k={self.k}, template={template!r}, order={self.order!r}, "
                f"max_model_len={self.max_model_len}, max_tokens={self.max_tokens})")


def _format_with_spec(spec: Mapping[str, str], demos: Sequence[Demonstration], query: str, query_input: str) -> str:
    """``format_few_shot`` for a custom template mapping (same keys and placeholders as ``fewshot.TEMPLATES``)."""

    def one(d: Demonstration, with_output: bool) -> str:
        block = spec["input_block"].format(input=d.input) if d.input else ""
        text = spec["example"].format(instruction=d.instruction, input_block=block, output=d.output if with_output else "")
        return text if with_output else text.rstrip(" ")

    parts = [one(d, True) for d in demos]
    parts.append(one(Demonstration(query, query_input), False))
    return spec["header"] + spec["separator"].join(parts)


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
            with ``.outputs[0].text``.
        retriever: the :class:`~pie_retriever.PIERetriever` holding the demonstration pool.
        builder: a ready :class:`FewShotPromptBuilder` (then ``retriever`` and the builder options are not used).
        tokenizer: the budget's tokenizer; default ``"auto"``: ``llm.get_tokenizer()`` when the engine has it.
        max_model_len: default ``"auto"``: the engine's ``model_config.max_model_len`` when it has one.
        stop: stop strings added to the sampling parameters of :meth:`generate` (on a copy): ``"auto"``
            (default) uses ``builder.stop``, the start of the next example such as ``"### Instruction:"``;
            ``None`` adds none. :meth:`chat` adds none (the chat template ends the assistant turn).
        **builder_options: ``k``, ``template``, ``order``, ``max_tokens``, ``system_prompt``,
            ``chat_template_kwargs``, ``retrieve_options`` (see :class:`FewShotPromptBuilder`).

    ``generate``/``chat`` retrieve for the whole batch in one call, build the prompts within the token budget
    and call the engine once. ``max_tokens`` of the sampling parameters is the generation budget the prompt
    leaves room for; without sampling parameters the engine's defaults are used with
    ``max_tokens=builder.max_tokens``.
    """

    def __init__(self, llm: Any, retriever: Any = None, *, builder: FewShotPromptBuilder | None = None,
                 tokenizer: Any = _AUTO, max_model_len: Any = _AUTO, stop: Any = _AUTO,
                 **builder_options: Any) -> None:
        if not (hasattr(llm, "generate") or hasattr(llm, "chat")):
            msg = f"llm must be a vllm.LLM or an object with generate()/chat() methods, got {type(llm).__name__}."
            raise TypeError(msg)
        self.llm = llm
        if stop is not _AUTO and stop is not None and not (
            isinstance(stop, (list, tuple)) and all(isinstance(x, str) and x for x in stop)
        ):
            msg = f"stop must be 'auto', None or a list of non-empty strings, got {stop!r}."
            raise ValueError(msg)
        self._stop = stop
        if builder is not None:
            if retriever is not None or builder_options or tokenizer is not _AUTO or max_model_len is not _AUTO:
                msg = "Pass either builder=... or retriever plus builder options, not both."
                raise ValueError(msg)
            self.builder = builder
            return
        if retriever is None:
            msg = "PIEGenerator needs a retriever (the demonstration pool) or a ready builder=FewShotPromptBuilder(...)."
            raise ValueError(msg)
        if tokenizer is _AUTO:
            getter = getattr(llm, "get_tokenizer", None)
            tokenizer = getter() if callable(getter) else None
        if max_model_len is _AUTO:
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
        if self._stop is _AUTO:
            return self.builder.stop
        return list(self._stop or [])

    # -- sampling parameters -------------------------------------------------------------------------
    @staticmethod
    def _with_stop(sp: Any, stop: list[str]) -> Any:
        """A copy of ``sp`` whose stop strings include ``stop`` (the caller's object is never modified)."""
        current = getattr(sp, "stop", None)
        current = [current] if isinstance(current, str) else list(current or [])
        merged = current + [s for s in stop if s not in current]
        if merged == current:
            return sp
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
            clone = getattr(default, "clone", None)
            sampling_params = clone() if callable(clone) else copy.copy(default)
            sampling_params.max_tokens = self.builder.max_tokens
        if isinstance(sampling_params, (list, tuple)):
            if len(sampling_params) != n:
                msg = f"Got {len(sampling_params)} sampling_params for {n} queries; pass one, or one per query."
                raise ValueError(msg)
            params = [self._with_stop(sp, stop) if stop else sp for sp in sampling_params]
            return params, [getattr(sp, "max_tokens", None) for sp in params]
        if stop:
            sampling_params = self._with_stop(sampling_params, stop)
        return sampling_params, [getattr(sampling_params, "max_tokens", None)] * n

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
            ``pie_retriever.models.resolve_model``).
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
            raise PIEError(msg)
        self.pooling = _check_choice("pooling", pooling, VLLM_POOLINGS)
        self.model_spec = os.fspath(model)
        self.resolved = resolve_model(self.model_spec)
        if self.resolved.artifact is not None:
            msg = (
                f"Model {self.model_spec!r} carries a trained artifact ({self.resolved.artifact}); VLLMEncoder serves the "
                "base weights only. Use TransformerEncoder for trained models."
            )
            raise PIEError(msg)
        self.prompt = resolve_prompt(prompt)
        self.query_prompt = resolve_prompt(query_prompt) if query_prompt is not None else self.prompt
        if not isinstance(normalize, bool):
            msg = f"normalize must be True or False, got {normalize!r}."
            raise ValueError(msg)
        self.normalize = normalize
        self.max_length = _check_positive_int(max_length, "max_length")
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
            raise PIEError(msg)
        pooler = getattr(config, "pooler_config", None)
        engine_pooling = getattr(pooler, "seq_pooling_type", None) or getattr(pooler, "pooling_type", None)
        if engine_pooling is not None and str(engine_pooling).upper() != VLLM_POOLINGS[self.pooling]:
            msg = f"The engine given pools with {engine_pooling!r} but pooling={self.pooling!r} was asked for."
            raise PIEError(msg)
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
            except Exception as exc:  # noqa: BLE001 - best effort at teardown
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
            raise PIEError(msg)
        if not texts:
            return np.zeros((0, getattr(self, "_dim", 0)), dtype=np.float32)
        template = resolve_prompt(prompt) if prompt is not None else self.prompt
        prompted = [apply_prompt(template, t) for t in texts]
        ids = self.tokenizer(prompted, add_special_tokens=True)["input_ids"]
        too_long = sum(len(x) > self.max_length for x in ids)
        if too_long:
            warnings.warn(
                f"{too_long} of {len(texts)} input(s) were longer than max_length={self.max_length} tokens "
                "(prompt included) and were truncated; raise max_length to keep more text.",
                stacklevel=2,
            )
            ids = [x[: self.max_length] for x in ids]
        kwargs: dict[str, Any] = {}
        if not self.normalize:  # also right when the engine was started (or adopted) with normalisation on
            kwargs["pooling_params"] = require("vllm", "vllm", "VLLMEncoder").PoolingParams(use_activation=False)
        outs = self.llm.embed([{"prompt_token_ids": list(x)} for x in ids], use_tqdm=bool(show_progress), **kwargs)
        vectors = np.asarray([o.outputs.embedding for o in outs], dtype=np.float32)
        return l2_normalize(vectors) if self.normalize else np.ascontiguousarray(vectors)

    def __repr__(self) -> str:
        return f"VLLMEncoder(model={self.model_spec!r}, pooling={self.pooling!r}, prompt={self.prompt[:30]!r}...)"
