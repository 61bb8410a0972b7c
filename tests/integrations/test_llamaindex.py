"""LlamaIndex integration with the real llama-index-core: PIEEmbedding in a VectorStoreIndex, PIELlamaIndexRetriever,
nodes whose metadata is not embedded, and the few-shot ``function_mappings`` pattern of LlamaIndex's docs."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import PromptTemplate, VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import MetadataMode, QueryBundle

from pie_retriever import PIERetriever, load_bundled_pool, load_bundled_queries
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.integrations.llamaindex import (
    PIEEmbedding,
    PIELlamaIndexRetriever,
    demonstrations_to_nodes,
    few_shot_examples_fn,
)


@pytest.fixture(scope="module")
def pie():
    return PIERetriever.from_demonstrations(load_bundled_pool(), HashingEncoder(dim=64))


def test_embedding_uses_query_and_text_prompts():
    emb = PIEEmbedding(HashingEncoder(dim=64, prompt="plain", query_prompt="pie"))
    assert isinstance(emb, BaseEmbedding)
    q = emb.get_query_embedding("Write a poem")
    t = emb.get_text_embedding("Write a poem")
    assert len(q) == len(t) == 64 and q != t  # different prompts, different vectors
    assert emb.get_text_embedding_batch(["Write a poem", "Summarize"])[0] == pytest.approx(t)
    assert asyncio.run(emb.aget_query_embedding("Write a poem")) == pytest.approx(q)
    with pytest.raises(ValueError, match="not both"):
        PIEEmbedding(HashingEncoder(dim=64), prompt="pie")


def test_retriever_nodes_scores_filter_and_saved_index(pie, tmp_path):
    ret = PIELlamaIndexRetriever(pie, k=3)
    assert isinstance(ret, BaseRetriever)
    nodes = ret.retrieve("Write a limerick about tax law.")
    assert len(nodes) == 3 and nodes[0].score >= nodes[1].score >= nodes[2].score
    assert nodes[0].node.metadata["task"] == "write|poem" and nodes[0].node.metadata["rank"] == 0
    assert nodes[0].node.node_id == nodes[0].node.metadata["id"]
    filtered = PIELlamaIndexRetriever(pie, k=2, filter={"task": "summarize|text"}).retrieve("Write a poem")
    assert {n.node.metadata["task"] for n in filtered} == {"summarize|text"}
    assert len(asyncio.run(ret.aretrieve(QueryBundle("Write a poem")))) == 3
    pie.save(tmp_path / "p.pie")
    again = PIELlamaIndexRetriever(tmp_path / "p.pie", k=3).retrieve("Write a limerick about tax law.")
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]


def test_nodes_keep_metadata_out_of_the_embedding(pie):
    node = demonstrations_to_nodes(load_bundled_pool()[:1])[0]
    assert node.get_content(MetadataMode.EMBED) == node.text
    assert "task: " in node.get_content(MetadataMode.LLM)
    assert "task: " in demonstrations_to_nodes(load_bundled_pool()[:1], embed_metadata=True)[0].get_content(MetadataMode.EMBED)
    # a VectorStoreIndex over these nodes with PIEEmbedding ranks like the PIERetriever itself
    index = VectorStoreIndex(demonstrations_to_nodes(load_bundled_pool()), embed_model=PIEEmbedding(pie))
    q = "Write a limerick about tax law."
    got = [n.score for n in index.as_retriever(similarity_top_k=4).retrieve(q)]
    assert got == pytest.approx([h.score for h in pie.retrieve(q, k=4)], abs=1e-3)


def test_few_shot_function_mappings(pie):
    template = PromptTemplate(
        "Examples:\n{few_shot_examples}\n\nInstruction: {query_str}\nResponse:",
        function_mappings={"few_shot_examples": few_shot_examples_fn(pie, k=2)},
    )
    text = template.format(query_str="Write a limerick about tax law.")
    hits = pie.retrieve("Write a limerick about tax law.", k=2)
    assert text.count("Instruction: ") == 3 and f"Instruction: {hits[0].demonstration.instruction}" in text
    assert text.endswith("Instruction: Write a limerick about tax law.\nResponse:")
    with pytest.raises(KeyError, match="query_str"):
        few_shot_examples_fn(pie)(question="x")


@pytest.mark.slow
def test_task_match_real_model_vs_metadata_embedded():
    """The default model on the bundled pool: PIELlamaIndexRetriever (instruction only) vs a VectorStoreIndex whose
    nodes embed their metadata (LlamaIndex's default). docs/llamaindex.md's figures come from benchmarks/own_pool.py."""
    from llama_index.core.schema import TextNode

    pool = load_bundled_pool()
    queries = load_bundled_queries()[:40]
    pie = PIERetriever.from_demonstrations(pool)
    default_nodes = [TextNode(text=d.instruction, metadata={"output": d.output, "topic": d.metadata["topic"]},
                              id_=d.id) for d in pool]
    task = {d.id: d.metadata["task"] for d in pool}
    index = VectorStoreIndex(default_nodes, embed_model=PIEEmbedding(pie)).as_retriever(similarity_top_k=4)
    ours = PIELlamaIndexRetriever(pie, k=4)

    def match(retriever):
        return sum(task[n.node.node_id] == q.metadata["task"] for q in queries for n in retriever.retrieve(q.instruction)) / (4 * len(queries))

    assert match(ours) > match(index)
