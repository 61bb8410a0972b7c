"""LangChain integration with the real default model on the bundled pool (and real MiniLM for embeddings)."""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.example_selectors import SemanticSimilarityExampleSelector
from langchain_core.prompts import (
    ChatPromptTemplate,
    FewShotChatMessagePromptTemplate,
    FewShotPromptTemplate,
    PromptTemplate,
)
from langchain_core.vectorstores import InMemoryVectorStore
from test_langchain import Recorder

from pie_retriever import PIERetriever, load_bundled_pool
from pie_retriever.encoders.models import DEFAULT_MODEL
from pie_retriever.integrations.langchain import PIEEmbeddings, PIEExampleSelector

SENTIMENT = "Is the sentiment of this coffee shop review positive or negative?"
QUERIES = [SENTIMENT, "Write a limerick about tax law.", "Translate this sentence about trains into Spanish."]
EXAMPLE_PROMPT = PromptTemplate.from_template("Instruction: {instruction}\nResponse: {output}")


def assert_same_ranking(a, b, tol: float = 3e-3) -> None:
    """Same documents in the same order, up to near-ties: with bf16 autocast (on CPUs that have it) the
    vectors depend slightly on the batch a text is padded with, so batched and single scores differ by ~1e-3."""
    assert [d.metadata["score"] for d in a] == pytest.approx([d.metadata["score"] for d in b], abs=tol)
    for x, y in zip(a, b):
        if x.id != y.id:
            assert abs(x.metadata["score"] - y.metadata["score"]) < tol, (x.id, y.id)


@pytest.fixture(scope="module")
def default_encoder(_minilm_session):
    if DEFAULT_MODEL == "minilm":
        return copy.deepcopy(_minilm_session)
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def bundled(default_encoder):
    """The bundled pool indexed with the default model (built once for this module; searches do not mutate it)."""
    return PIERetriever.from_demonstrations(load_bundled_pool(), default_encoder)


def test_real_invoke_batch_and_async_with_k_overrides(bundled):
    lc = bundled.as_langchain_retriever(k=4)
    one = lc.invoke(SENTIMENT)
    assert len(one) == 4 and one[0].metadata["task"] == "classify|sentiment"
    assert one[0].page_content == bundled.get(one[0].id).text(("instruction", "input"))
    assert len(lc.invoke(SENTIMENT, k=2)) == 2
    batched = lc.batch(QUERIES, k=2)
    single = [lc.invoke(q, k=2) for q in QUERIES]
    assert [len(d) for d in batched] == [2, 2, 2]
    for b, s in zip(batched, single):
        assert_same_ranking(b, s)

    async def main():
        return await lc.ainvoke(SENTIMENT, k=3), await lc.abatch(QUERIES, k=1)

    a_one, a_many = asyncio.run(main())
    assert_same_ranking(a_one, lc.invoke(SENTIMENT, k=3))
    for b, s in zip(a_many, single):
        assert_same_ranking(b, s[:1])


def test_real_callbacks(bundled):
    lc = bundled.as_langchain_retriever(k=2)
    rec = Recorder()
    lc.batch(QUERIES, config={"callbacks": [rec]})
    asyncio.run(lc.ainvoke(SENTIMENT, config={"callbacks": [rec]}))
    starts, ends = rec.of("start"), rec.of("end")
    assert sorted(e[1] for e in starts) == sorted([*QUERIES, SENTIMENT])
    assert len(ends) == 4 and all(len(e[1]) == 2 for e in ends)


def test_real_selector_few_shot_prompt(bundled):
    selector = PIEExampleSelector(retriever=bundled, k=3, example_prompt=EXAMPLE_PROMPT)
    prompt = FewShotPromptTemplate(
        example_selector=selector, example_prompt=EXAMPLE_PROMPT,
        prefix="Answer like the examples.", suffix="Instruction: {instruction}\nResponse:", input_variables=["instruction"],
    )
    text = prompt.invoke({"instruction": SENTIMENT}).to_string()
    picked = selector.select_examples({"instruction": SENTIMENT})
    assert all(set(e) == {"instruction", "output"} for e in picked)
    top = bundled.retrieve(SENTIMENT, k=1)[0].demonstration
    assert top.metadata["task"] == "classify|sentiment"
    assert f"Instruction: {top.instruction}\nResponse: {top.output}" in text
    assert text.startswith("Answer like the examples.\n\n") and text.endswith(f"Instruction: {SENTIMENT}\nResponse:")
    assert text.count("Instruction: ") == 4
    assert asyncio.run(prompt.ainvoke({"instruction": SENTIMENT})).to_string() == text


def test_real_selector_chat_prompt(bundled):
    selector = PIEExampleSelector(retriever=bundled, k=2)
    example_prompt = ChatPromptTemplate.from_messages([("human", "{instruction}"), ("ai", "{output}")])
    few_shot = FewShotChatMessagePromptTemplate(example_selector=selector, example_prompt=example_prompt, input_variables=["instruction"])
    final = ChatPromptTemplate.from_messages([("system", "Answer like the examples."), few_shot, ("human", "{instruction}")])
    messages = final.invoke({"instruction": SENTIMENT}).to_messages()
    assert [m.type for m in messages] == ["system", "human", "ai", "human", "ai", "human"]
    top = bundled.retrieve(SENTIMENT, k=1)[0].demonstration
    assert (messages[1].content, messages[2].content) == (top.instruction, top.output)


def test_real_from_examples_and_braces(minilm):
    examples = [
        {"instruction": "Return a JSON object with key a set to 1.", "output": '{"a": 1}'},
        {"instruction": "Write a haiku about the sea.", "output": "Waves fold on the sand"},
        {"instruction": "Summarize: the cat sat on the mat.", "output": "A cat sat."},
    ]
    prompt_kwargs = {"example_prompt": EXAMPLE_PROMPT, "suffix": "Instruction: {instruction}\nResponse:", "input_variables": ["instruction"]}
    ours = PIEExampleSelector.from_examples(examples, minilm, k=2, input_keys=["instruction"])
    text = FewShotPromptTemplate(example_selector=ours, **prompt_kwargs).format(instruction="Return a JSON object with key b set to 2.")
    assert 'Instruction: Return a JSON object with key a set to 1.\nResponse: {"a": 1}' in text
    theirs = SemanticSimilarityExampleSelector.from_examples(
        examples, PIEEmbeddings(encoder=minilm), InMemoryVectorStore, k=2, input_keys=["instruction"],
    )
    with pytest.raises(KeyError):
        FewShotPromptTemplate(example_selector=theirs, **prompt_kwargs).format(instruction="Return a JSON object with key b set to 2.")


def test_real_embeddings_match_the_encoder_and_the_retriever(bundled):
    emb = PIEEmbeddings.from_retriever(bundled)
    pool = bundled.demonstrations
    store = InMemoryVectorStore.from_texts([d.instruction for d in pool], emb, metadatas=[{"id": d.id} for d in pool])
    found = store.similarity_search_with_score(SENTIMENT, k=4)
    hits = bundled.retrieve(SENTIMENT, k=4)
    assert [doc.metadata["id"] for doc, _ in found] == [h.id for h in hits]
    assert [s for _, s in found] == pytest.approx([h.score for h in hits], abs=1e-4)


def test_real_query_prompt_differs_from_document_prompt(minilm):
    emb = PIEEmbeddings("minilm", prompt="plain", query_prompt="pie")
    text = "Write a limerick about tax law."
    doc, query = np.array(emb.embed_documents([text])[0]), np.array(emb.embed_query(text))
    assert doc.shape == query.shape == (384,)
    assert np.allclose(doc, minilm.encode([text], prompt="plain")[0], atol=1e-3)
    assert np.allclose(query, minilm.encode([text], prompt="pie")[0], atol=1e-3)
    assert float(doc @ query) < 0.99  # the PIE prompt changes the query vector
