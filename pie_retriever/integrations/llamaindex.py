"""LlamaIndex integration: an instruction ``BaseEmbedding``, a ``BaseRetriever`` over a ``PIERetriever`` and the
few-shot ``function_mappings`` pattern.

Needs the ``llamaindex`` extra (``llama-index-core`` 0.12)::

    from pie_retriever.integrations.llamaindex import (
        PIEEmbedding, PIELlamaIndexRetriever, demonstrations_to_nodes, few_shot_examples_fn)

- :class:`PIEEmbedding` is a ``BaseEmbedding``: queries get the encoder's query prompt, texts its document
  prompt. Use it as ``embed_model=`` of a ``VectorStoreIndex``. LlamaIndex embeds a node's metadata with its
  text by default (``MetadataMode.EMBED``), which blurs task match; :func:`demonstrations_to_nodes` builds nodes
  whose metadata is shown to the LLM but not embedded.
- :class:`PIELlamaIndexRetriever` is a ``BaseRetriever`` over a :class:`~pie_retriever.PIERetriever`:
  ``retrieve(query)`` → ``NodeWithScore`` list (k, filter, min_score, MMR as for ``PIERetriever.retrieve``).
- :func:`few_shot_examples_fn` is the function LlamaIndex's docs plug into
  ``PromptTemplate(..., function_mappings={"few_shot_examples": fn})`` to put retrieved examples in a prompt.

Only the public API of ``pie_retriever`` is used here.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Sequence

from pie_retriever._util import DEFAULT_K
from pie_retriever.errors import ConfigError, require

require("llama_index.core", "llamaindex", "pie_retriever.integrations.llamaindex")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

from pie_retriever._util import check_k, check_query  # noqa: E402
from pie_retriever.encoders.base import Encoder  # noqa: E402
from pie_retriever.prompting.fewshot import format_example, template_spec  # noqa: E402
from pie_retriever.retrieval.retriever import PIERetriever  # noqa: E402
from pie_retriever.types import Demonstration, Hit  # noqa: E402

__all__ = ["PIEEmbedding", "PIELlamaIndexRetriever", "demonstrations_to_nodes", "few_shot_examples_fn", "hit_to_node"]


class PIEEmbedding(BaseEmbedding):
    """LlamaIndex ``BaseEmbedding`` of instruction embeddings.

    Args:
        model: a model spec (default: the library's default model), an ``Encoder``, or a ``PIERetriever``
            (its encoder, so the vectors match the retriever's).
        prompt: document ("text") prompt, a name (``pie``, ``plain``) or a template with ``{instruction}``.
        query_prompt: query prompt; default the document prompt.
        embed_batch_size: texts per encoder call (LlamaIndex's field).
        **encoder_kwargs: further ``TransformerEncoder`` options (``pooling``, ``max_length``, ...).
    """

    _encoder: Any = PrivateAttr()

    def __init__(self, model: Any = None, *, prompt: str | None = None, query_prompt: str | None = None,
                 embed_batch_size: int = 64, **encoder_kwargs: Any) -> None:
        encoder = _encoder(model, prompt, query_prompt, encoder_kwargs)
        super().__init__(model_name=str(encoder.config().get("model", type(encoder).__name__)),
                         embed_batch_size=check_k(embed_batch_size, "embed_batch_size"))
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "PIEEmbedding"

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode_queries([check_query(query)])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode_documents(list(texts)).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


def _encoder(model: Any, prompt: str | None, query_prompt: str | None, encoder_kwargs: dict[str, Any]) -> Encoder:
    if isinstance(model, PIERetriever):
        model = model.encoder
    if isinstance(model, Encoder):
        given = [n for n, v in (("prompt", prompt), ("query_prompt", query_prompt)) if v is not None] + list(encoder_kwargs)
        if given:
            msg = f"Pass either an encoder/retriever or model options, not both (got {given})."
            raise ConfigError(msg)
        return model
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(None if model is None else os.fspath(model), prompt=prompt, query_prompt=query_prompt,
                              **encoder_kwargs)


def demonstrations_to_nodes(demos: Sequence[Any], *, text_fields: tuple[str, ...] = ("instruction",),
                            embed_metadata: bool = False) -> list[TextNode]:
    """``TextNode``s of demonstrations: text = ``text_fields`` joined, metadata = the demonstration's metadata plus
    ``input``/``output``. With ``embed_metadata=False`` (default) every metadata key is excluded from the
    embedding (``excluded_embed_metadata_keys``) but still shown to the LLM."""
    nodes = []
    for d in (Demonstration.from_any(x) for x in demos):
        metadata = {**d.metadata, "input": d.input, "output": d.output}
        nodes.append(TextNode(text=d.text(text_fields), id_=d.id or None, metadata=metadata,
                              excluded_embed_metadata_keys=[] if embed_metadata else list(metadata)))
    return nodes


def hit_to_node(hit: Hit, text_fields: tuple[str, ...] = ("instruction", "input")) -> NodeWithScore:
    """A ``NodeWithScore`` of a hit: text = the demonstration's fields, metadata = its metadata plus ``id``,
    ``rank``, ``instruction``, ``input``, ``output``."""
    d = hit.demonstration
    metadata = {**d.metadata, "id": d.id, "rank": hit.rank, "instruction": d.instruction, "input": d.input, "output": d.output}
    return NodeWithScore(node=TextNode(text=d.text(text_fields), id_=d.id, metadata=metadata), score=float(hit.score))


class PIELlamaIndexRetriever(BaseRetriever):
    """LlamaIndex ``BaseRetriever`` over a ``PIERetriever`` (or the path of a saved index): demonstrations whose
    *task* matches the query, as ``NodeWithScore`` (best first; ``score`` is the cosine).

    ``k``, ``filter``, ``min_score``, ``mmr`` are set here; ``text_fields`` choose the node text.
    """

    def __init__(self, retriever: PIERetriever | str | os.PathLike, k: int = DEFAULT_K, *, filter: Any = None,
                 min_score: float | None = None, mmr: bool = False,
                 text_fields: tuple[str, ...] = ("instruction", "input"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retriever = retriever if isinstance(retriever, PIERetriever) else PIERetriever.load(retriever)
        self.k = check_k(k)
        self.filter, self.min_score, self.mmr = filter, min_score, mmr
        self.text_fields = tuple(text_fields)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.retriever.retrieve(check_query(query_bundle.query_str), k=self.k, filter=self.filter,
                                       min_score=self.min_score, mmr=self.mmr)
        return [hit_to_node(h, self.text_fields) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def few_shot_examples_fn(retriever: PIERetriever | PIELlamaIndexRetriever, k: int = DEFAULT_K, *, query_key: str = "query_str",
                         template: str = "plain", filter: Any = None) -> Callable[..., str]:
    """A function for ``PromptTemplate(function_mappings={"few_shot_examples": fn})``: it reads the query from the
    format arguments (``query_key``), retrieves ``k`` task-matched demonstrations and renders them with
    :func:`pie_retriever.prompting.fewshot.format_example` (``template``: ``plain``, ``alpaca`` or a spec mapping)."""
    pie = retriever.retriever if isinstance(retriever, PIELlamaIndexRetriever) else retriever
    k = check_k(k)

    def few_shot_examples(**kwargs: Any) -> str:
        if query_key not in kwargs:
            msg = f"few_shot_examples needs the format argument {query_key!r}; got {sorted(kwargs)}."
            raise KeyError(msg)
        hits = pie.retrieve(check_query(kwargs[query_key]), k=k, filter=filter)
        return spec["separator"].join(format_example(h.demonstration, spec) for h in hits)

    spec = template_spec(template)
    return few_shot_examples
