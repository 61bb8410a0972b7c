"""LangChain integration: a drop-in retriever, a few-shot example selector and an ``Embeddings``.

Needs the ``langchain`` extra (``langchain-core`` 1.x)::

    from pie_retriever.integrations.langchain import PIELangChainRetriever, PIEExampleSelector, PIEEmbeddings

- :class:`PIELangChainRetriever` is a ``BaseRetriever`` over a :class:`~pie_retriever.PIERetriever`.
  ``k``, ``filter``, ``min_score`` and the MMR options are set at construction and can be overridden per
  call (``retriever.invoke(q, k=2)``). ``batch``/``abatch`` embed all queries in one encoder call and still
  report one retriever run per query to callbacks.
- :class:`PIEExampleSelector` is a ``BaseExampleSelector`` for ``FewShotPromptTemplate`` and
  ``FewShotChatMessagePromptTemplate`` that picks examples by task match, with an optional length budget
  and brace escaping (``FewShotPromptTemplate`` formats the joined examples a second time).
- :class:`PIEEmbeddings` is an ``Embeddings`` that puts instruction embeddings into any LangChain vector
  store (``InMemoryVectorStore``, FAISS, external databases).

Only the public API of ``pie_retriever`` is used here.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Literal, Mapping, Sequence

from pie_retriever._util import DEFAULT_K
from pie_retriever.errors import ConfigError, require

require("langchain_core", "langchain", "pie_retriever.integrations.langchain")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.example_selectors import BaseExampleSelector  # noqa: E402
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from langchain_core.runnables.config import get_config_list, run_in_executor  # noqa: E402
from pydantic import BaseModel, ConfigDict, field_validator  # noqa: E402

from pie_retriever._util import check_k, check_query  # noqa: E402
from pie_retriever.encoders.base import Encoder  # noqa: E402
from pie_retriever.retrieval.retriever import PIERetriever  # noqa: E402
from pie_retriever.types import Demonstration, Hit  # noqa: E402

__all__ = ["PIEEmbeddings", "PIEExampleSelector", "PIELangChainRetriever", "escape_f_string_braces", "hit_to_document"]

# Options a caller may override per call; each is also a constructor field of the retriever and selector.
RETRIEVAL_OPTIONS: dict[str, str] = {
    "k": "number of documents to return",
    "filter": "{metadata_key: value or [values]} or a callable(Demonstration) -> bool",
    "min_score": "drop hits whose cosine score is below this",
    "mmr": "re-rank with maximal marginal relevance for diversity",
    "mmr_lambda": "MMR trade-off: 1.0 = relevance only, 0.0 = diversity only",
    "fetch_k": "candidates MMR re-ranks (default max(4k, 20))",
}
DEMO_FIELDS = ("instruction", "input", "output")
# Metadata key that remembers which keys an example dict had (examples added through the selector).
EXAMPLE_KEYS_FIELD = "lc_example_keys"


class _Unset:
    """Marks a per-call option that was not given (``None`` is a meaningful value for filter/min_score)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


class _RetrievalOptions(BaseModel):
    """The options shared by the retriever and the example selector, validated once at construction."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    k: int = DEFAULT_K
    """Number of demonstrations to return."""
    filter: Any = None
    """``{metadata_key: value or [values]}`` (all keys must match) or a callable ``(Demonstration) -> bool``."""
    min_score: float | None = None
    """Drop hits whose cosine score is below this."""
    mmr: bool = False
    """Re-rank with maximal marginal relevance for diversity."""
    mmr_lambda: float = 0.5
    """MMR trade-off: 1.0 = relevance only, 0.0 = diversity only."""
    fetch_k: int | None = None
    """Candidates MMR re-ranks (default ``max(4k, 20)``)."""

    @field_validator("k")
    @classmethod
    def _valid_k(cls, v: int) -> int:
        return check_k(v)

    @field_validator("mmr_lambda")
    @classmethod
    def _valid_lambda(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            msg = f"mmr_lambda must be in [0, 1], got {v!r}."
            raise ConfigError(msg)
        return v


def _merge_options(defaults: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor options updated with the per-call ones that were actually given."""
    extra = {key: value for key, value in overrides.items() if key != "verbose"}  # BaseRetriever passes verbose on
    unknown = sorted(set(extra) - set(RETRIEVAL_OPTIONS))
    if unknown:
        msg = f"Unknown retrieval option(s) {unknown}; per-call options are: {', '.join(RETRIEVAL_OPTIONS)}."
        raise TypeError(msg)
    options = {name: getattr(defaults, name) for name in RETRIEVAL_OPTIONS}
    options.update({key: value for key, value in extra.items() if value is not _UNSET})
    check_k(options["k"])
    return options


# -- retriever -----------------------------------------------------------------------------------------
def hit_to_document(hit: Hit, page_content_fields: Sequence[str] = ("instruction", "input")) -> Document:
    """A LangChain ``Document`` for one hit.

    ``page_content`` is the demonstration text (the chosen fields joined by newlines). ``metadata`` holds the
    demonstration's own metadata plus ``id``, ``score``, ``rank``, ``instruction``, ``input`` and ``output``
    (these win over metadata keys of the same name).
    """
    demo = hit.demonstration
    metadata = dict(demo.metadata)
    metadata.update(
        id=demo.id, score=float(hit.score), rank=hit.rank,
        instruction=demo.instruction, input=demo.input, output=demo.output,
    )
    return Document(page_content=demo.text(tuple(page_content_fields)), metadata=metadata, id=demo.id)


def _report_end(run_manager: Any, result: list[Document] | Exception) -> Any:
    """Tell one query's callbacks how its run ended (returns the coroutine for an async run manager)."""
    if isinstance(result, Exception):
        return run_manager.on_retriever_error(result)
    return run_manager.on_retriever_end(result)


def _raise_unless_returned(results: list[Any], return_exceptions: bool) -> list[Any]:
    """``results``, or the first exception among them unless the caller asked for exceptions as results."""
    if not return_exceptions:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


class PIELangChainRetriever(_RetrievalOptions, BaseRetriever):
    """LangChain retriever over a :class:`~pie_retriever.PIERetriever`: documents whose *task* matches the query.

    Example:
        ```python
        from pie_retriever import PIERetriever, load_bundled_pool

        retriever = PIERetriever.from_demonstrations(load_bundled_pool()).as_langchain_retriever(k=3)
        docs = retriever.invoke("Write a limerick about tax law.")
        docs = retriever.invoke("Write a limerick about tax law.", k=1, filter={"topic": "cats"})
        ```

    Every option (``k``, ``filter``, ``min_score``, ``mmr``, ``mmr_lambda``, ``fetch_k``) set here can be
    overridden per call as a keyword of ``invoke``/``ainvoke``/``batch``/``abatch``. ``batch`` and ``abatch``
    embed all queries in one encoder call and one index search (LangChain's default runs one thread per
    query); callbacks still see one retriever run per query. ``ainvoke`` runs the search in an executor, so
    the event loop keeps running.
    """

    retriever: PIERetriever
    """The pool to search."""
    page_content_fields: tuple[str, ...] = ("instruction", "input")
    """Demonstration fields joined (by newlines) into ``Document.page_content``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @field_validator("page_content_fields")
    @classmethod
    def _valid_fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in v if f not in DEMO_FIELDS]
        if not v or bad:
            msg = f"page_content_fields must be a non-empty subset of {DEMO_FIELDS}, got {v!r}."
            raise ConfigError(msg)
        return v

    # -- core ----------------------------------------------------------------------------------------
    def _search(self, queries: list[str], options: dict[str, Any]) -> list[list[Document]]:
        hit_lists = self.retriever.retrieve_batch(queries, **options)
        return [[hit_to_document(h, self.page_content_fields) for h in hits] for hits in hit_lists]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int = _UNSET,
        filter: Any = _UNSET,
        min_score: float | None = _UNSET,
        mmr: bool = _UNSET,
        mmr_lambda: float = _UNSET,
        fetch_k: int | None = _UNSET,
        **kwargs: Any,
    ) -> list[Document]:
        options = _merge_options(self, dict(kwargs, k=k, filter=filter, min_score=min_score, mmr=mmr, mmr_lambda=mmr_lambda, fetch_k=fetch_k))
        return self._search([check_query(query)], options)[0]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int = _UNSET,
        filter: Any = _UNSET,
        min_score: float | None = _UNSET,
        mmr: bool = _UNSET,
        mmr_lambda: float = _UNSET,
        fetch_k: int | None = _UNSET,
        **kwargs: Any,
    ) -> list[Document]:
        options = _merge_options(self, dict(kwargs, k=k, filter=filter, min_score=min_score, mmr=mmr, mmr_lambda=mmr_lambda, fetch_k=fetch_k))
        # Encoding is CPU-bound: run it in an executor so the event loop keeps serving other tasks.
        return (await run_in_executor(None, self._search, [check_query(query)], options))[0]

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_retriever_name"] = "pie"
        params["ls_embedding_provider"] = "pie_retriever"
        model = self.retriever.encoder.config().get("model")
        if model:
            params["ls_embedding_model"] = str(model)
        return params

    # -- batching: one encoder call, one callback run per query ---------------------------------------
    def _callback_manager(self, config: RunnableConfig, kwargs: Mapping[str, Any], cls: Any) -> Any:
        """The same callback manager ``BaseRetriever.invoke``/``ainvoke`` configures for one query."""
        inheritable_metadata = {**(config.get("metadata") or {}), **self._get_ls_params(**kwargs)}
        return cls.configure(
            config.get("callbacks"),
            None,
            verbose=kwargs.get("verbose", False),
            inheritable_tags=config.get("tags"),
            local_tags=self.tags,
            inheritable_metadata=inheritable_metadata,
            local_metadata=self.metadata,
        )

    def _run_info(self, config: RunnableConfig) -> dict[str, Any]:
        """The run name and id ``on_retriever_start`` gets for one query of a batch."""
        return {"name": config.get("run_name") or self.get_name(), "run_id": config.get("run_id")}

    def _run_batch(self, inputs: list[Any], kwargs: dict[str, Any]) -> list[list[Document] | Exception]:
        """Search every valid query in one call; a bad query or a failed search becomes that slot's exception."""
        out: list[Any] = [None] * len(inputs)
        try:
            options = _merge_options(self, kwargs)
        except Exception as exc:
            return [exc] * len(inputs)
        valid: list[int] = []
        for i, query in enumerate(inputs):
            try:
                check_query(query)
                valid.append(i)
            except Exception as exc:
                out[i] = exc
        if valid:
            try:
                docs = self._search([inputs[i] for i in valid], options)
            except Exception as exc:
                docs = [exc] * len(valid)
            for i, d in zip(valid, docs):
                out[i] = d
        return out

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Retrieve for many queries with one encoder call; per-call options (``k=...``) apply to all."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        run_managers = [
            self._callback_manager(cfg, kwargs, CallbackManager).on_retriever_start(None, query, **self._run_info(cfg))
            for query, cfg in zip(inputs, configs)
        ]
        results = self._run_batch(list(inputs), kwargs)
        for run_manager, result in zip(run_managers, results):
            _report_end(run_manager, result)
        return _raise_unless_returned(results, return_exceptions)

    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Async :meth:`batch`: one encoder call, run in an executor so the event loop is not blocked."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        run_managers = []
        for query, cfg in zip(inputs, configs):
            manager = self._callback_manager(cfg, kwargs, AsyncCallbackManager)
            run_managers.append(await manager.on_retriever_start(None, query, **self._run_info(cfg)))
        results = await run_in_executor(configs[0], self._run_batch, list(inputs), kwargs)
        for run_manager, result in zip(run_managers, results):
            await _report_end(run_manager, result)
        return _raise_unless_returned(results, return_exceptions)


# -- example selector ----------------------------------------------------------------------------------
def _word_count(text: str) -> int:
    """LangChain's ``LengthBasedExampleSelector`` default: pieces split on spaces and newlines."""
    return len(re.split(r"\n| ", text))


def escape_f_string_braces(value: Any) -> Any:
    """Double ``{`` and ``}`` in a string so an f-string template prints them literally; other values pass."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    return value


def _join_keys(values: Mapping[str, Any], keys: Sequence[str] | None, what: str) -> str:
    """The text of the chosen keys (in the given order, newline-joined); all keys sorted by name when None."""
    if keys is None:
        keys = sorted(values)
    missing = [key for key in keys if key not in values]
    if missing:
        msg = f"{what} has no key(s) {missing} named in input_keys; its keys are {sorted(values)}."
        raise KeyError(msg)
    return "\n".join(str(values[key]) for key in keys if values[key] is not None and str(values[key]))


def _caller_template(max_depth: int = 6) -> Any:
    """The few-shot prompt template (if any) whose ``_get_examples``/``_aget_examples`` called the selector."""
    frame = sys._getframe(2)
    for _ in range(max_depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if owner is not None and hasattr(owner, "example_selector") and hasattr(owner, "example_prompt"):
            return owner
        frame = frame.f_back
    return None


def _template_formats_twice(template: Any) -> bool:
    """True when the template runs the joined example text through an f-string format a second time."""
    from langchain_core.prompts import FewShotChatMessagePromptTemplate

    if isinstance(template, FewShotChatMessagePromptTemplate):
        return False  # examples become messages; their text is formatted once
    return getattr(template, "template_format", "f-string") == "f-string"


class PIEExampleSelector(_RetrievalOptions, BaseExampleSelector):
    """Few-shot example selector that picks examples by *task* match (drop-in for
    ``SemanticSimilarityExampleSelector``).

    Example:
        ```python
        selector = PIEExampleSelector.from_examples(examples, k=2, input_keys=["input"])
        prompt = FewShotPromptTemplate(example_selector=selector, example_prompt=example_prompt,
                                       suffix="Input: {input}\\nOutput:", input_variables=["input"])
        ```

    Args:
        retriever: the pool. Built from example dicts by :meth:`from_examples`, or any ``PIERetriever``
            (then each example is ``{"id", "instruction", "input", "output", **metadata}``).
        input_keys: keys of the input variables (and of added examples) whose values form the query text;
            default all keys, sorted by name, as LangChain does. Name the instruction key(s) only: embedding
            outputs too blurs the task match.
        example_keys: keys each returned example carries (like LangChain's ``example_keys``); default the
            ``example_prompt``'s input variables when that is given, else every key.
        example_prompt: the prompt that formats one example; gives the default ``example_keys`` and is
            what the length budget measures.
        max_length: optional budget (like ``LengthBasedExampleSelector``): the query plus the formatted
            examples must fit in it; the lowest-ranked examples are dropped first.
        get_text_length: length function for the budget; default LangChain's word count.
        escape_braces: ``FewShotPromptTemplate`` formats the joined examples a second time, so a demo such
            as ``{"a": 1}`` raises KeyError there. ``"auto"`` (default) doubles braces in returned string
            values unless the caller is a template that formats examples once
            (``FewShotChatMessagePromptTemplate``, or a non-f-string ``template_format``); ``True`` always
            escapes, ``False`` never.
        k, filter, min_score, mmr, mmr_lambda, fetch_k: as for :meth:`PIERetriever.retrieve`.
    """

    retriever: PIERetriever
    input_keys: list[str] | None = None
    example_keys: list[str] | None = None
    example_prompt: Any = None
    max_length: int | None = None
    get_text_length: Callable[[str], int] = _word_count
    escape_braces: bool | Literal["auto"] = "auto"

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @field_validator("max_length")
    @classmethod
    def _valid_max_length(cls, v: int | None) -> int | None:
        if v is not None:
            check_k(v, "max_length")
        return v

    @field_validator("example_prompt")
    @classmethod
    def _valid_prompt(cls, v: Any) -> Any:
        if v is not None and not hasattr(v, "input_variables"):
            msg = f"example_prompt must be a LangChain prompt template (PromptTemplate or ChatPromptTemplate), got {type(v).__name__}."
            raise TypeError(msg)
        return v

    # -- construction ----------------------------------------------------------------------------------
    @classmethod
    def from_examples(
        cls,
        examples: Sequence[Mapping[str, Any]],
        encoder: Any = None,
        *,
        k: int = DEFAULT_K,
        input_keys: list[str] | None = None,
        example_keys: list[str] | None = None,
        example_prompt: Any = None,
        index: Any = "flat",
        **kwargs: Any,
    ) -> PIEExampleSelector:
        """Index example dicts (embedding the ``input_keys`` values) and return a selector over them.

        ``encoder``: ``None`` (the default model), a model name or folder, an ``Encoder``, or a
        :class:`PIEEmbeddings`. Other keyword arguments are fields of the selector (``max_length``,
        ``escape_braces``, ``filter``, ...).
        """
        retriever = PIERetriever(_as_encoder(encoder), index=index)
        selector = cls(
            retriever=retriever, k=k, input_keys=input_keys, example_keys=example_keys,
            example_prompt=example_prompt, **kwargs,
        )
        examples = list(examples)
        if examples:
            retriever.add([selector._to_demonstration(ex, i) for i, ex in enumerate(examples)])
        return selector

    @classmethod
    async def afrom_examples(cls, examples: Sequence[Mapping[str, Any]], encoder: Any = None, **kwargs: Any) -> PIEExampleSelector:
        """Async :meth:`from_examples` (indexing runs in an executor)."""
        return await run_in_executor(None, lambda: cls.from_examples(examples, encoder, **kwargs))

    def _to_demonstration(self, example: Mapping[str, Any], position: int | None = None) -> Demonstration:
        if not isinstance(example, Mapping):
            where = "example" if position is None else f"example #{position}"
            msg = f"{where} must be a dict of prompt variables, got {type(example).__name__}."
            raise TypeError(msg)
        text = _join_keys(example, self.input_keys, "example" if position is None else f"example #{position}")
        metadata = dict(example)
        metadata[EXAMPLE_KEYS_FIELD] = list(example)
        return Demonstration(instruction=text, metadata=metadata)

    def add_example(self, example: dict[str, Any]) -> str:
        """Embed and index one example dict; returns its id in the pool."""
        return self.retriever.add([self._to_demonstration(example)])[0]

    # -- selection -------------------------------------------------------------------------------------
    @staticmethod
    def _to_example(demo: Demonstration) -> dict[str, Any]:
        keys = demo.metadata.get(EXAMPLE_KEYS_FIELD)
        if keys is not None:
            return {key: demo.metadata[key] for key in keys}
        example = {key: value for key, value in demo.metadata.items() if key not in ("id", *DEMO_FIELDS)}
        example.update(id=demo.id, instruction=demo.instruction, input=demo.input, output=demo.output)
        return example

    def _keys(self) -> list[str] | None:
        if self.example_keys is not None:
            return list(self.example_keys)
        if self.example_prompt is not None:
            return list(self.example_prompt.input_variables)
        return None

    def _shape(self, example: dict[str, Any], keys: list[str] | None, demo_id: str | None) -> dict[str, Any]:
        if keys is None:
            return example
        missing = [key for key in keys if key not in example]
        if missing:
            msg = (
                f"Example {demo_id!r} has no key(s) {missing}, which the example prompt / example_keys ask for; "
                f"its keys are {sorted(example)}."
            )
            raise KeyError(msg)
        return {key: example[key] for key in keys}

    def _length(self, example: dict[str, Any]) -> int:
        if self.example_prompt is not None:
            variables = {key: example.get(key, "") for key in self.example_prompt.input_variables}
            text = self.example_prompt.format(**variables)
        else:
            text = "\n".join(str(v) for v in example.values())
        return self.get_text_length(text)

    def _fit(self, examples: list[dict[str, Any]], input_variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Drop the lowest-ranked examples until the inputs plus the examples fit in ``max_length``."""
        inputs = " ".join(str(v) for v in input_variables.values() if isinstance(v, str))
        budget = self.max_length - self.get_text_length(inputs)  # type: ignore[operator]
        lengths = [self._length(e) for e in examples]
        while examples and sum(lengths) > budget:
            examples, lengths = examples[:-1], lengths[:-1]
        return examples

    def _select(self, input_variables: Mapping[str, Any], escape: bool, overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(input_variables, Mapping):
            msg = f"select_examples() takes a dict of input variables, got {type(input_variables).__name__}."
            raise TypeError(msg)
        query = _join_keys(input_variables, self.input_keys, "input_variables")
        options = _merge_options(self, overrides)
        hits = self.retriever.retrieve(check_query(query), **options)
        keys = self._keys()
        examples = [self._shape(self._to_example(h.demonstration), keys, h.demonstration.id) for h in hits]
        if self.max_length is not None:
            examples = self._fit(examples, input_variables)
        if escape:
            examples = [{key: escape_f_string_braces(value) for key, value in e.items()} for e in examples]
        return examples

    def _escape_for(self, caller: Any) -> bool:
        if self.escape_braces != "auto":
            return bool(self.escape_braces)
        return True if caller is None else _template_formats_twice(caller)

    def select_examples(self, input_variables: dict[str, Any], **overrides: Any) -> list[dict[str, Any]]:
        """The examples whose task best matches the query built from ``input_variables``, best first.

        ``overrides``: per-call ``k``, ``filter``, ``min_score``, ``mmr``, ``mmr_lambda``, ``fetch_k``.
        """
        return self._select(input_variables, self._escape_for(_caller_template()), overrides)

    async def aselect_examples(self, input_variables: dict[str, Any], **overrides: Any) -> list[dict[str, Any]]:
        """Async :meth:`select_examples`; the search runs in an executor so the event loop is not blocked."""
        escape = self._escape_for(_caller_template())
        return await run_in_executor(None, self._select, input_variables, escape, overrides)

    async def aadd_example(self, example: dict[str, Any]) -> str:
        """Async :meth:`add_example` (embedding runs in an executor)."""
        return await run_in_executor(None, self.add_example, example)


# -- embeddings ----------------------------------------------------------------------------------------
class PIEEmbeddings(Embeddings):
    """LangChain ``Embeddings`` that produce instruction embeddings, for any LangChain vector store.

    Args:
        model: alias (``pie-minilm``, ``minilm``, ...), local folder or cached hub id; default the library's
            ``DEFAULT_MODEL``.
        prompt: prompt for documents (``embed_documents``): a name (``pie``, ``plain``) or a template with
            ``{instruction}``; default the model's own.
        query_prompt: prompt for queries (``embed_query``); default the same as ``prompt``.
        encoder: an existing :class:`~pie_retriever.encoders.Encoder` to use instead (e.g. a
            ``PIERetriever``'s, see :meth:`from_retriever`); then model/prompt options must not be given.
        **encoder_kwargs: further ``TransformerEncoder`` options (``pooling``, ``max_length``, ...).

    Vectors are L2-normalised float lists, so inner product, cosine and L2 rank alike.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        prompt: str | None = None,
        query_prompt: str | None = None,
        encoder: Encoder | None = None,
        **encoder_kwargs: Any,
    ) -> None:
        if encoder is not None:
            given = [name for name, value in (("model", model), ("prompt", prompt), ("query_prompt", query_prompt)) if value is not None]
            given += list(encoder_kwargs)
            if given:
                msg = f"Pass either encoder= or model options, not both (got encoder and {given})."
                raise ConfigError(msg)
            if not isinstance(encoder, Encoder):
                msg = f"encoder must be a pie_retriever Encoder, got {type(encoder).__name__}."
                raise TypeError(msg)
        else:
            from pie_retriever.encoders.models import DEFAULT_MODEL
            from pie_retriever.encoders.transformer import TransformerEncoder

            encoder = TransformerEncoder(
                DEFAULT_MODEL if model is None else os.fspath(model), prompt=prompt, query_prompt=query_prompt, **encoder_kwargs,
            )
        self.encoder: Encoder = encoder

    @classmethod
    def from_retriever(cls, retriever: PIERetriever) -> PIEEmbeddings:
        """Embeddings that share ``retriever``'s encoder (same model, prompts and vectors)."""
        return cls(encoder=retriever.encoder)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the document prompt; one encoder call for all texts."""
        return self.encoder.encode_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the query prompt."""
        if not isinstance(text, str):
            msg = f"embed_query() takes a string, got {type(text).__name__}."
            raise TypeError(msg)
        return self.encoder.encode_queries([text])[0].tolist()

    def __repr__(self) -> str:
        cfg = self.encoder.config()
        return f"PIEEmbeddings(type={cfg.get('type')!r}, model={cfg.get('model', '')!r}, dim={self.encoder.dim})"


def _as_encoder(encoder: Any) -> Any:
    """What ``PIERetriever`` accepts as encoder, from an Encoder, a PIEEmbeddings, a model name or None."""
    if encoder is None or isinstance(encoder, (str, os.PathLike, Encoder)):
        return encoder
    if isinstance(encoder, PIEEmbeddings):
        return encoder.encoder
    msg = (
        f"encoder must be None (the default model), a model name or folder, a pie_retriever Encoder or a "
        f"PIEEmbeddings, got {type(encoder).__name__}. (Other LangChain Embeddings work with "
        "SemanticSimilarityExampleSelector; PIEExampleSelector needs an instruction encoder.)"
    )
    raise TypeError(msg)
