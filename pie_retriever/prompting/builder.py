"""Framework-free few-shot prompt building: retrieve demonstrations, render them, keep within a token budget.

:class:`FewShotPromptBuilder` turns a query into a completion prompt (Alpaca-style by default) or a list of
chat messages holding the demonstrations a :class:`~pie_retriever.PIERetriever` picked. With a tokenizer and
``max_model_len`` it keeps the prompt within ``max_model_len - max_tokens`` tokens by dropping the
lowest-ranked demonstrations whole, never cutting one in half.

It needs no LLM framework: any tokenizer with ``encode`` (and ``apply_chat_template`` for chat prompts)
measures the prompt. The vLLM integration (:mod:`pie_retriever.integrations.vllm`) re-exports it and feeds
its prompts to an engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pie_retriever._util import DEFAULT_K, check_choice, check_int, check_k
from pie_retriever.errors import ConfigError, PromptBudgetError
from pie_retriever.prompting.fewshot import TEMPLATE_KEYS, TEMPLATES, format_few_shot
from pie_retriever.types import Demonstration, Hit

__all__ = [
    "ORDERS",
    "RETRIEVE_OPTIONS",
    "TEMPLATE_KEYS",
    "FewShotPrompt",
    "FewShotPromptBuilder",
    "PromptBudgetError",
    "chat_user_content",
]

ORDERS: dict[str, str] = {
    "most_similar_last": "best match right before the query (default; the model reads it last)",
    "most_similar_first": "best match first, right after the header",
}

#: Extra arguments of ``PIERetriever.retrieve_batch`` a builder may pass on.
RETRIEVE_OPTIONS = ("content_weight", "fetch_k", "filter", "min_score", "mmr", "mmr_lambda")

#: Marks an argument left at its default (``None`` is a meaningful value for ``system_prompt``).
AUTO: Any = "auto"

TemplateSpec = str | Mapping[str, str] | Callable[[Sequence[Demonstration], str, str], str]


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def chat_user_content(instruction: str, query_input: str = "") -> str:
    """The user message for an instruction: the instruction, then its input after a blank line when given."""
    return f"{instruction}\n\n{query_input}" if query_input else instruction


def _as_query(query: Any, query_input: str = "") -> tuple[str, str]:
    """A query given as a string (plus ``query_input``), a dict ``{instruction, input?}`` or a Demonstration."""
    if isinstance(query, str):
        instruction, text_input = query, query_input
    elif isinstance(query, Demonstration):
        instruction, text_input = query.instruction, query.input or query_input
    elif isinstance(query, Mapping):
        if "instruction" not in query:
            msg = f"A query dict needs an 'instruction' key (keys: {sorted(query)})."
            raise ConfigError(msg)
        instruction, text_input = query["instruction"], query.get("input") or query_input
    else:
        msg = f"A query must be a string, a dict {{'instruction', 'input'?}} or a Demonstration, got {type(query).__name__}."
        raise TypeError(msg)
    if not isinstance(instruction, str) or not instruction.strip():
        msg = f"The query instruction must be a non-empty string, got {instruction!r:.60}."
        raise ConfigError(msg)
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

        from pie_retriever.encoders.models import resolve_model

        resolved = resolve_model(spec)
        return AutoTokenizer.from_pretrained(str(resolved.path))
    if spec is None or hasattr(spec, "encode"):
        return spec
    msg = (
        f"tokenizer must be None, a model alias/folder/hub id, or a tokenizer object with an encode() method "
        f"(e.g. `llm.get_tokenizer()`), got {type(spec).__name__}."
    )
    raise TypeError(msg)


def _check_template(template: Any) -> TemplateSpec:
    """A template name, a complete spec mapping (placeholders checked now) or a callable; else an error."""
    if isinstance(template, str):
        if template not in TEMPLATES:
            msg = (
                f"Unknown few-shot template {template!r}; choose one of: {', '.join(TEMPLATES)}, or pass a mapping "
                f"with keys {list(TEMPLATE_KEYS)} or a callable (demonstrations, query, query_input) -> str."
            )
            raise ConfigError(msg)
        return template
    if isinstance(template, Mapping):
        missing = [key for key in TEMPLATE_KEYS if key not in template]
        unknown = sorted(set(template) - set(TEMPLATE_KEYS))
        if missing or unknown:
            msg = f"A template mapping needs exactly the keys {list(TEMPLATE_KEYS)}; missing {missing}, unknown {unknown}."
            raise ConfigError(msg)
        spec = {key: template[key] for key in TEMPLATE_KEYS}
        # Validate the placeholders now, with a dummy demonstration, rather than at the first query.
        try:
            format_few_shot([Demonstration("i", "x", "o")], "q", "y", spec)
        except (KeyError, IndexError, ValueError) as exc:
            msg = (
                f"Invalid template mapping ({type(exc).__name__}: {exc}). 'example' may use {{instruction}}, "
                "{input_block} and {output}; 'input_block' may use {input}; escape literal braces as '{{' and '}}'."
            )
            raise ConfigError(msg) from exc
        return spec
    if callable(template):
        return template
    msg = f"template must be a name ({', '.join(TEMPLATES)}), a mapping or a callable, got {type(template).__name__}."
    raise TypeError(msg)


def _check_budget(max_model_len: int | None, max_tokens: int, tokenizer: Any) -> int | None:
    if max_model_len is None:
        return None
    max_model_len = check_int(max_model_len, "max_model_len")
    if tokenizer is None:
        msg = (
            "max_model_len needs a tokenizer to measure prompts: pass tokenizer=<model alias or folder> or "
            "tokenizer=llm.get_tokenizer() (PIEGenerator does that for you)."
        )
        raise ConfigError(msg)
    if max_tokens >= max_model_len:
        msg = f"max_tokens={max_tokens} leaves no room for a prompt within max_model_len={max_model_len}."
        raise ConfigError(msg)
    return max_model_len


def _check_retrieve_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = sorted(set(options) - set(RETRIEVE_OPTIONS))
    if unknown:
        msg = f"Unknown retrieve_options {unknown}; valid: {sorted(RETRIEVE_OPTIONS)}."
        raise ConfigError(msg)
    return options


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


class FewShotPromptBuilder:
    """Build few-shot prompts from the demonstrations a :class:`~pie_retriever.PIERetriever` picks.

    Args:
        retriever: the demonstration pool.
        k: demonstrations to retrieve per query (fewer end up in the prompt when the budget is tight).
        template: completion format: a name from ``pie_retriever.prompting.fewshot.TEMPLATES`` (``"alpaca"``, the
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
            :class:`~pie_retriever.integrations.vllm.PIEGenerator` to ``LLM.chat``), e.g.
            ``{"enable_thinking": False}``.
        retrieve_options: extra arguments of ``PIERetriever.retrieve_batch`` (``filter``, ``min_score``,
            ``mmr``, ``mmr_lambda``, ``fetch_k``, ``content_weight``; without it, the retriever's default).
    """

    def __init__(
        self,
        retriever: Any,
        *,
        k: int = DEFAULT_K,
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
        self.k = check_k(k)
        self.template = _check_template(template)
        self.order = check_choice("order", order, ORDERS)
        self.tokenizer = _load_tokenizer(tokenizer)
        self.max_tokens = check_int(max_tokens, "max_tokens", minimum=0)
        self.max_model_len = _check_budget(max_model_len, self.max_tokens, self.tokenizer)
        if system_prompt is not None and not isinstance(system_prompt, str):
            msg = f"system_prompt must be a string or None, got {type(system_prompt).__name__}."
            raise TypeError(msg)
        self.system_prompt = system_prompt
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.retrieve_options = _check_retrieve_options(retrieve_options)

    # -- configuration -------------------------------------------------------------------------------
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
        if isinstance(self.template, (str, Mapping)):
            return format_few_shot(demos, query, query_input, self.template)
        text = self.template(demos, query, query_input)
        if not isinstance(text, str):
            msg = f"The template callable returned {type(text).__name__}, expected a string."
            raise TypeError(msg)
        return text

    def render_chat(self, hits: Sequence[Hit | Demonstration], query: str, query_input: str = "", *,
                    system_prompt: Any = AUTO) -> list[dict[str, str]]:
        """Chat messages: optional system message, one user/assistant turn per demonstration, then the query."""
        system = self.system_prompt if system_prompt is AUTO else system_prompt
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
            raise ConfigError(msg)
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
        options = dict(self.retrieve_options)
        weight = options.get("content_weight", getattr(self.retriever, "content_weight", 0.0)) or 0.0
        if weight > 0 and getattr(self.retriever, "content", None) is not None:  # content reads instruction + input
            options.setdefault("content_queries", [Demonstration(q, i).text(("instruction", "input")) for q, i in parsed])
        return self.retriever.retrieve_batch(texts, self.k, **options)

    def _fit(self, hits: list[Hit], query: str, query_input: str, *, chat: bool, max_tokens: int | None,
             system_prompt: Any) -> FewShotPrompt:
        def render(n: int) -> Any:
            if chat:
                return self.render_chat(hits[:n], query, query_input, system_prompt=system_prompt)
            return self.render(hits[:n], query, query_input)

        reserve = self.max_tokens if max_tokens is None else check_int(max_tokens, "max_tokens", minimum=0)
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
                   max_tokens: int | None = None, system_prompt: Any = AUTO) -> FewShotPrompt:
        """Like :meth:`build` but returns chat messages (``.messages``) for ``LLM.chat``."""
        return self.build_batch([_as_query(query, query_input)], chat=True, max_tokens=max_tokens,
                                system_prompt=system_prompt)[0]

    def build_batch(self, queries: Sequence[Any], *, chat: bool = False, max_tokens: int | Sequence[int | None] | None = None,
                    system_prompt: Any = AUTO) -> list[FewShotPrompt]:
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
                raise ConfigError(msg)
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
