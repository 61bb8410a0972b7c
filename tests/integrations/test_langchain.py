"""LangChain integration against real langchain-core, fast cases on the deterministic HashingEncoder.

Real-model cases live in test_langchain_real.py, the standard suite in test_langchain_standard.py and the
README snippets in test_langchain_readme.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.example_selectors import SemanticSimilarityExampleSelector
from langchain_core.prompts import (
    ChatPromptTemplate,
    FewShotChatMessagePromptTemplate,
    FewShotPromptTemplate,
    PromptTemplate,
)
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.integrations.langchain import (
    PIEEmbeddings,
    PIEExampleSelector,
    PIELangChainRetriever,
)


class Recorder(BaseCallbackHandler):
    """A real callback handler that records retriever and chain events (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *event) -> None:
        with self._lock:
            self.events.append(event)

    def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, **kwargs):
        self._add("start", query, run_id, parent_run_id)

    def on_retriever_end(self, documents, *, run_id, parent_run_id=None, **kwargs):
        self._add("end", [d.id for d in documents], run_id, parent_run_id)

    def on_retriever_error(self, error, *, run_id, parent_run_id=None, **kwargs):
        self._add("error", error, run_id, parent_run_id)

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
        self._add("chain_start", inputs, run_id, parent_run_id)

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]


@pytest.fixture
def pie(small_pool, fake_encoder):
    return PIERetriever.from_demonstrations(small_pool, fake_encoder)


@pytest.fixture
def lc(pie):
    return pie.as_langchain_retriever(k=3)


QUERIES = ["Write a poem about the ocean.", "Summarize the text about tax law.", "Translate into German: taxes are due."]


# -- retriever -----------------------------------------------------------------------------------------
def test_as_langchain_retriever_builds_the_wrapper(pie):
    lc = pie.as_langchain_retriever(k=2, min_score=0.1, tags=["pie"])
    assert isinstance(lc, PIELangChainRetriever) and isinstance(lc, BaseRetriever)
    assert lc.retriever is pie and lc.k == 2 and lc.min_score == 0.1 and lc.tags == ["pie"]


def test_invoke_returns_documents_with_metadata(lc, pie):
    docs = lc.invoke("Summarize the text about tax law.")
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    demo = pie.get("s2")
    assert top.id == "s2"
    assert top.page_content == "Summarize the text about tax law.\nTax law is..."  # instruction + input
    assert top.metadata["id"] == "s2" and top.metadata["rank"] == 0
    assert top.metadata["output"] == demo.output == "Taxes are complex."
    assert top.metadata["instruction"] == demo.instruction and top.metadata["input"] == demo.input
    assert top.metadata["task"] == "summarize|article" and top.metadata["topic"] == "taxes"  # its own metadata
    assert [d.metadata["rank"] for d in docs] == [0, 1, 2]
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True) and isinstance(scores[0], float)
    hits = pie.retrieve("Summarize the text about tax law.", k=3)
    assert [d.id for d in docs] == [h.id for h in hits]


def test_page_content_fields(pie):
    lc = pie.as_langchain_retriever(k=1, page_content_fields=("instruction",))
    assert lc.invoke("Summarize the text about tax law.")[0].page_content == "Summarize the text about tax law."
    with pytest.raises(ValueError, match="page_content_fields must be a non-empty subset"):
        pie.as_langchain_retriever(page_content_fields=("title",))


def test_k_override_per_call(lc):
    assert len(lc.invoke("Write a poem about the ocean.")) == 3
    assert len(lc.invoke("Write a poem about the ocean.", k=1)) == 1
    assert len(lc.invoke("Write a poem about the ocean.", k=5)) == 5
    assert lc.k == 3  # the override does not stick


def test_filter_min_score_mmr_overrides(pie):
    lc = pie.as_langchain_retriever(k=3, filter={"topic": "ocean"})
    assert {d.metadata["topic"] for d in lc.invoke("Write a poem")} == {"ocean"}
    assert {d.metadata["topic"] for d in lc.invoke("Write a poem", filter={"topic": "taxes"})} == {"taxes"}
    assert len(lc.invoke("Write a poem", filter=None, k=6)) == 6  # None clears the constructor's filter
    assert [d.id for d in lc.invoke("Write a poem", k=1, filter=lambda d: d.id == "p2")] == ["p2"]
    assert all(d.metadata["score"] >= 0.5 for d in lc.invoke("Write a poem", filter=None, min_score=0.5))
    plain = pie.retrieve("Write a poem about the ocean.", k=3)
    diverse = pie.retrieve("Write a poem about the ocean.", k=3, mmr=True, mmr_lambda=0.2)
    docs = lc.invoke("Write a poem about the ocean.", filter=None, k=3, mmr=True, mmr_lambda=0.2)
    assert [d.id for d in docs] == [h.id for h in diverse]
    assert len(plain) == len(docs) == 3


def test_constructor_options_are_used(pie):
    lc = PIELangChainRetriever(retriever=pie, k=2, mmr=True, mmr_lambda=0.0, fetch_k=6)
    expected = pie.retrieve("Write a poem about the ocean.", k=2, mmr=True, mmr_lambda=0.0, fetch_k=6)
    assert [d.id for d in lc.invoke("Write a poem about the ocean.")] == [h.id for h in expected]


def test_bad_options_raise_clear_errors(pie, lc):
    with pytest.raises(TypeError, match=r"Unknown retrieval option\(s\) \['top_k'\]; per-call options are: k, filter"):
        lc.invoke("Write a poem", top_k=2)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        lc.invoke("Write a poem", k=0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        PIELangChainRetriever(retriever=pie, k=-1)
    with pytest.raises(ValueError, match=r"mmr_lambda must be in \[0, 1\]"):
        PIELangChainRetriever(retriever=pie, mmr_lambda=2.0)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        PIELangChainRetriever(retriever=pie, top_k=2)
    with pytest.raises(ValueError, match="query is empty"):
        lc.invoke("   ")
    with pytest.raises(KeyError, match="Unknown metadata filter key"):
        lc.invoke("Write a poem", filter={"nope": 1})


def test_callbacks_fire_on_invoke(lc):
    rec = Recorder()
    docs = lc.invoke("Write a poem about the ocean.", config={"callbacks": [rec]}, k=2)
    assert [e[0] for e in rec.events] == ["start", "end"]
    assert rec.events[0][1] == "Write a poem about the ocean."
    assert rec.events[1][1] == [d.id for d in docs]
    assert rec.events[0][2] == rec.events[1][2]  # same run
    rec2 = Recorder()
    with pytest.raises(ValueError, match="k must be a positive integer"):
        lc.invoke("Write a poem", config={"callbacks": [rec2]}, k=0)
    assert [e[0] for e in rec2.events] == ["start", "error"]
    assert isinstance(rec2.events[1][1], ValueError)


def test_batch_makes_one_encoder_call_where_langchain_default_makes_one_per_query(lc, pie):
    before = pie.encoder.calls
    ours = lc.batch(QUERIES, k=2)
    assert pie.encoder.calls - before == 1
    before = pie.encoder.calls
    default = BaseRetriever.batch(lc, QUERIES, k=2)  # LangChain's default: invoke() per query in threads
    assert pie.encoder.calls - before == len(QUERIES)
    assert [[d.id for d in docs] for docs in ours] == [[d.id for d in docs] for docs in default]
    assert [[d.id for d in docs] for docs in ours] == [[d.id for d in lc.invoke(q, k=2)] for q in QUERIES]
    assert lc.batch([]) == []


def test_batch_callbacks_match_langchain_default(lc):
    ours, default = Recorder(), Recorder()
    lc.batch(QUERIES, config={"callbacks": [ours], "tags": ["t"]}, k=1)
    BaseRetriever.batch(lc, QUERIES, config={"callbacks": [default], "tags": ["t"]}, k=1)

    def summary(rec: Recorder) -> list:
        by_run = {}
        for kind, payload, run_id, _ in rec.events:
            by_run.setdefault(run_id, []).append((kind, payload))
        return sorted(by_run.values())

    assert summary(ours) == summary(default)
    assert len(ours.of("start")) == len(ours.of("end")) == len(QUERIES)
    assert len({e[2] for e in ours.of("start")}) == len(QUERIES)  # one run per query


def test_batch_per_query_configs_and_run_names(lc):
    recs = [Recorder() for _ in QUERIES]
    run_ids = [uuid.uuid4() for _ in QUERIES]
    configs = [{"callbacks": [r], "run_name": f"q{i}", "run_id": rid} for i, (r, rid) in enumerate(zip(recs, run_ids))]
    lc.batch(QUERIES, config=configs)
    for rec, query, rid in zip(recs, QUERIES, run_ids):
        assert [(e[0], e[2]) for e in rec.events] == [("start", rid), ("end", rid)]
        assert rec.events[0][1] == query


def test_batch_return_exceptions_isolates_a_bad_query(lc):
    rec = Recorder()
    out = lc.batch(["Write a poem", "", "Summarize taxes"], config={"callbacks": [rec]}, return_exceptions=True)
    assert isinstance(out[1], ValueError) and "query is empty" in str(out[1])
    assert len(out[0]) == 3 and len(out[2]) == 3
    assert sorted(e[0] for e in rec.events) == ["end", "end", "error", "start", "start", "start"]
    with pytest.raises(ValueError, match="query is empty"):
        lc.batch(["Write a poem", ""])
    errors = lc.batch(["Write a poem", "Summarize"], k=0, return_exceptions=True)
    assert all(isinstance(e, ValueError) for e in errors)


def test_batch_in_a_chain_reports_parent_runs(lc):
    rec = Recorder()
    chain = lc | RunnableLambda(lambda docs: [d.metadata["output"] for d in docs])
    before = lc.retriever.encoder.calls
    outputs = chain.batch(QUERIES, config={"callbacks": [rec]})
    assert lc.retriever.encoder.calls - before == 1  # the sequence calls our batch()
    assert len(outputs) == len(QUERIES) and all(len(o) == 3 for o in outputs)
    starts = rec.of("start")
    assert sorted(e[1] for e in starts) == sorted(QUERIES)
    chain_runs = {e[2] for e in rec.of("chain_start")}
    assert all(e[3] in chain_runs for e in starts)
    assert len({e[3] for e in starts}) == len(QUERIES)  # each query under its own chain run
    bound = lc.bind(k=1)
    assert [len(d) for d in bound.batch(QUERIES)] == [1, 1, 1]


@pytest.mark.asyncio
async def test_ainvoke_and_abatch_with_k_overrides(lc, pie):
    docs = await lc.ainvoke("Write a poem about the ocean.", k=2)
    assert [d.id for d in docs] == [d.id for d in lc.invoke("Write a poem about the ocean.", k=2)]
    before = pie.encoder.calls
    out = await lc.abatch(QUERIES, k=1)
    assert pie.encoder.calls - before == 1
    assert [[d.id for d in o] for o in out] == [[d.id for d in lc.invoke(q, k=1)] for q in QUERIES]
    assert await lc.abatch([]) == []


@pytest.mark.asyncio
async def test_async_callbacks_and_errors(lc):
    rec = Recorder()
    await lc.ainvoke("Write a poem", config={"callbacks": [rec]}, k=1)
    await lc.abatch(QUERIES, config={"callbacks": [rec]}, k=1)
    assert len(rec.of("start")) == len(rec.of("end")) == 1 + len(QUERIES)
    rec = Recorder()
    with pytest.raises(ValueError, match="k must be a positive integer"):
        await lc.ainvoke("Write a poem", config={"callbacks": [rec]}, k=0)
    assert [e[0] for e in rec.events] == ["start", "error"]
    out = await lc.abatch(["Write a poem", ""], config={"callbacks": [rec]}, return_exceptions=True)
    assert isinstance(out[1], ValueError) and len(out[0]) == 3
    with pytest.raises(ValueError, match="query is empty"):
        await lc.abatch(["Write a poem", ""])


class SlowEncoder(HashingEncoder):
    """A HashingEncoder whose encode() blocks its thread, like a real model forward pass."""

    delay = 0.3

    def encode(self, texts, **kwargs):
        time.sleep(self.delay)
        return super().encode(texts, **kwargs)


@pytest.mark.parametrize("method", ["ainvoke", "abatch"])
def test_async_calls_do_not_block_the_event_loop(small_pool, method):
    lc = PIERetriever.from_demonstrations(small_pool, SlowEncoder(dim=64)).as_langchain_retriever(k=2)

    async def main() -> tuple[int, object]:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        if method == "ainvoke":
            result = await lc.ainvoke("Write a poem")
        else:
            result = await lc.abatch(QUERIES)
        done = True
        await task
        return ticks, result

    ticks, result = asyncio.run(main())
    assert result  # got documents
    assert ticks >= 10, f"the event loop ran only {ticks} ticks during a 0.3 s encode: it was blocked"


# -- example selector ------------------------------------------------------------------------------
EXAMPLES = [
    {"input": "Write a poem about the ocean.", "output": "Waves...", "note": "x"},
    {"input": "Compose a poem about taxes.", "output": "Forms...", "note": "y"},
    {"input": "Summarize the article about the ocean.", "output": "Oceans are big.", "note": "z"},
    {"input": "Translate into French: the ocean is blue.", "output": "L'océan est bleu.", "note": "w"},
]
EXAMPLE_PROMPT = PromptTemplate.from_template("Input: {input}\nOutput: {output}")


@pytest.fixture
def selector(fake_encoder):
    return PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, k=2, input_keys=["input"])


def test_selector_returns_example_dicts_best_first(selector):
    got = selector.select_examples({"input": "Write a poem about the ocean."})
    assert got[0] == EXAMPLES[0]  # all keys of the example when no example prompt/keys are given
    assert len(got) == 2


def test_selector_query_comes_from_input_keys(fake_encoder):
    sel = PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, k=1, input_keys=["input"])
    # 'context' is not an input key, so its words do not pull the taxes example up
    assert sel.select_examples({"input": "Summarize the article about the ocean.", "context": "taxes taxes"})[0]["output"] == "Oceans are big."
    with pytest.raises(KeyError, match=r"input_variables has no key\(s\) \['input'\]"):
        sel.select_examples({"question": "x"})
    with pytest.raises(KeyError, match=r"example #0 has no key\(s\) \['instruction'\]"):
        PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, input_keys=["instruction"])


def test_selector_keys_follow_example_prompt_or_example_keys(fake_encoder):
    sel = PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, k=3, input_keys=["input"], example_prompt=EXAMPLE_PROMPT)
    assert all(set(e) == {"input", "output"} for e in sel.select_examples({"input": "a poem"}))
    sel = PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, k=3, input_keys=["input"], example_keys=["output"])
    assert all(set(e) == {"output"} for e in sel.select_examples({"input": "a poem"}))
    sel.example_keys = ["missing"]
    with pytest.raises(KeyError, match=r"has no key\(s\) \['missing'\]"):
        sel.select_examples({"input": "a poem"})


def test_selector_per_call_overrides_and_filter(selector):
    assert len(selector.select_examples({"input": "ocean"}, k=4)) == 4
    got = selector.select_examples({"input": "ocean"}, k=2, filter={"note": ["x", "y"]})
    assert {e["note"] for e in got} == {"x", "y"}


def test_add_example_and_async_forms(selector):
    new = {"input": "Write a limerick about trains.", "output": "A train...", "note": "v"}
    demo_id = selector.add_example(new)
    assert demo_id in selector.retriever
    assert selector.select_examples({"input": "Write a limerick about trains."})[0] == new

    async def main():
        other = {"input": "Explain gravity to a child.", "output": "Things fall.", "note": "u"}
        await selector.aadd_example(other)
        return await selector.aselect_examples({"input": "Explain gravity to a child."})

    assert asyncio.run(main())[0]["output"] == "Things fall."


def test_from_examples_accepts_pie_embeddings_and_empty_start(fake_encoder):
    sel = PIEExampleSelector.from_examples([], PIEEmbeddings(encoder=fake_encoder), k=1, input_keys=["input"])
    assert len(sel.retriever) == 0
    sel.add_example(EXAMPLES[0])
    assert sel.select_examples({"input": "poem"}) == [EXAMPLES[0]]
    with pytest.raises(TypeError, match="encoder must be None .* got DeterministicFakeEmbedding"):
        PIEExampleSelector.from_examples(EXAMPLES, DeterministicFakeEmbedding(size=8))
    assert asyncio.run(PIEExampleSelector.afrom_examples(EXAMPLES, fake_encoder, input_keys=["input"])).k == 4


def test_selector_over_an_existing_demonstration_pool(pie):
    prompt = PromptTemplate.from_template("Instruction: {instruction}\nResponse: {output}")
    sel = PIEExampleSelector(retriever=pie, k=2, example_prompt=prompt)
    got = sel.select_examples({"instruction": "Summarize the text about tax law."})
    assert got[0] == {"instruction": "Summarize the text about tax law.", "output": "Taxes are complex."}
    full = PIEExampleSelector(retriever=pie, k=1).select_examples({"instruction": "Summarize the text about tax law."})
    assert full[0] == {"id": "s2", "instruction": "Summarize the text about tax law.", "input": "Tax law is...",
                       "output": "Taxes are complex.", "task": "summarize|article", "topic": "taxes"}


def test_length_budget_drops_lowest_ranked_first(fake_encoder):
    sel = PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, k=4, input_keys=["input"], example_prompt=EXAMPLE_PROMPT)
    query = {"input": "Write a poem about the ocean."}
    full = sel.select_examples(query)
    lengths = [len(EXAMPLE_PROMPT.format(**e)) for e in full]
    budget = len(query["input"]) + lengths[0] + lengths[1] + 1  # room for the two best only
    fitted = PIEExampleSelector.from_examples(
        EXAMPLES, fake_encoder, k=4, input_keys=["input"], example_prompt=EXAMPLE_PROMPT,
        max_length=budget, get_text_length=len,
    ).select_examples(query)
    assert fitted == full[:2]
    words = PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, k=4, input_keys=["input"], example_prompt=EXAMPLE_PROMPT, max_length=3)
    assert words.select_examples(query) == []  # the query alone (6 words) is over budget
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        PIEExampleSelector.from_examples(EXAMPLES, fake_encoder, max_length=0)


def test_selector_chain_few_shot_prompt_template(selector):
    prompt = FewShotPromptTemplate(
        example_selector=selector, example_prompt=EXAMPLE_PROMPT,
        prefix="Follow the examples.", suffix="Input: {input}\nOutput:", input_variables=["input"],
    )
    chain = prompt | RunnableLambda(lambda p: p.to_string())
    text = chain.invoke({"input": "Compose a poem about the ocean."})
    assert text.startswith("Follow the examples.\n\nInput: ")
    assert text.endswith("Input: Compose a poem about the ocean.\nOutput:")
    assert text.count("Input: ") == 3  # two examples + the query
    assert "Output: Waves..." in text
    assert asyncio.run(chain.ainvoke({"input": "Compose a poem about the ocean."})) == text


def test_selector_chain_chat_variant(selector):
    example_prompt = ChatPromptTemplate.from_messages([("human", "{input}"), ("ai", "{output}")])
    few_shot = FewShotChatMessagePromptTemplate(example_selector=selector, example_prompt=example_prompt, input_variables=["input"])
    final = ChatPromptTemplate.from_messages([("system", "Follow the examples."), few_shot, ("human", "{input}")])
    messages = final.invoke({"input": "Compose a poem about the ocean."}).to_messages()
    assert [m.type for m in messages] == ["system", "human", "ai", "human", "ai", "human"]
    assert messages[2].content == "Waves..."
    assert messages[-1].content == "Compose a poem about the ocean."
    assert asyncio.run(final.ainvoke({"input": "Compose a poem about the ocean."})).to_messages() == messages


# -- braces --------------------------------------------------------------------------------------------
BRACE_EXAMPLES = [
    {"input": "Return the JSON for a equal to one.", "output": '{"a": 1}'},
    {"input": "Greet the user by name.", "output": "Hello {name}!"},
]


def _few_shot(selector) -> FewShotPromptTemplate:
    return FewShotPromptTemplate(example_selector=selector, example_prompt=EXAMPLE_PROMPT,
                                 suffix="Input: {input}\nOutput:", input_variables=["input"])


def test_braces_break_langchains_own_selector():
    """The bug we guard against: LangChain's selector + FewShotPromptTemplate raise KeyError on `{"a": 1}`."""
    lc_selector = SemanticSimilarityExampleSelector.from_examples(
        BRACE_EXAMPLES, DeterministicFakeEmbedding(size=16), InMemoryVectorStore, k=2, input_keys=["input"],
    )
    with pytest.raises(KeyError):
        _few_shot(lc_selector).format(input="Return the JSON for b equal to two.")


def test_braces_are_safe_by_default(fake_encoder):
    sel = PIEExampleSelector.from_examples(BRACE_EXAMPLES, fake_encoder, k=2, input_keys=["input"])
    text = _few_shot(sel).format(input="Return the JSON for b equal to two.")
    assert 'Output: {"a": 1}' in text
    assert "Output: Hello {name}!" in text  # a placeholder-looking demo stays literal, it is not filled in
    assert asyncio.run(_few_shot(sel).aformat(input="Return the JSON for b equal to two.")) == text
    # called directly, values come back escaped (ready for an f-string template)
    assert {'{{"a": 1}}', "Hello {{name}}!"} == {e["output"] for e in sel.select_examples({"input": "JSON"})}


def test_braces_verbatim_in_chat_variant(fake_encoder):
    """FewShotChatMessagePromptTemplate formats each example once, so escaping there would show `{{`."""
    sel = PIEExampleSelector.from_examples(BRACE_EXAMPLES, fake_encoder, k=2, input_keys=["input"])
    example_prompt = ChatPromptTemplate.from_messages([("human", "{input}"), ("ai", "{output}")])
    few_shot = FewShotChatMessagePromptTemplate(example_selector=sel, example_prompt=example_prompt, input_variables=["input"])
    contents = {m.content for m in few_shot.format_messages(input="Return the JSON")}
    assert {'{"a": 1}', "Hello {name}!"} <= contents
    contents = {m.content for m in asyncio.run(few_shot.aformat_messages(input="Return the JSON"))}
    assert {'{"a": 1}', "Hello {name}!"} <= contents
    forced = PIEExampleSelector.from_examples(BRACE_EXAMPLES, fake_encoder, k=2, input_keys=["input"], escape_braces=True)
    few_shot = FewShotChatMessagePromptTemplate(example_selector=forced, example_prompt=example_prompt, input_variables=["input"])
    assert '{{"a": 1}}' in {m.content for m in few_shot.format_messages(input="Return the JSON")}


def test_braces_safe_in_few_shot_prompt_with_templates(fake_encoder):
    from langchain_core.prompts import FewShotPromptWithTemplates

    sel = PIEExampleSelector.from_examples(BRACE_EXAMPLES, fake_encoder, k=2, input_keys=["input"])
    prompt = FewShotPromptWithTemplates(
        example_selector=sel, example_prompt=EXAMPLE_PROMPT,
        suffix=PromptTemplate.from_template("Input: {input}\nOutput:"), input_variables=["input"],
    )
    assert 'Output: {"a": 1}' in prompt.format(input="Return the JSON for b equal to two.")


def test_escape_braces_off_reproduces_langchains_behaviour(fake_encoder):
    sel = PIEExampleSelector.from_examples(BRACE_EXAMPLES, fake_encoder, k=2, input_keys=["input"], escape_braces=False)
    assert {'{"a": 1}', "Hello {name}!"} == {e["output"] for e in sel.select_examples({"input": "JSON"})}
    with pytest.raises(KeyError):
        _few_shot(sel).format(input="Return the JSON for b equal to two.")


# -- embeddings ----------------------------------------------------------------------------------------
def test_embeddings_with_fake_encoder_and_in_memory_store(small_pool, fake_encoder):
    emb = PIEEmbeddings(encoder=fake_encoder)
    vectors = emb.embed_documents(["Write a poem", "Summarize taxes"])
    assert len(vectors) == 2 and len(vectors[0]) == emb.dim == 64
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-5
    assert len(emb.embed_query("Write a poem")) == 64
    assert emb.embed_documents([]) == []
    texts = [d["instruction"] for d in small_pool]
    store = InMemoryVectorStore.from_texts(texts, emb, metadatas=[d["metadata"] for d in small_pool])
    pie = PIERetriever.from_demonstrations(small_pool, fake_encoder)
    found = store.similarity_search_with_score("Summarize the text about tax law.", k=3)
    hits = pie.retrieve("Summarize the text about tax law.", k=3)
    assert found[0][0].page_content == hits[0].demonstration.instruction
    assert [s for _, s in found] == pytest.approx([h.score for h in hits], abs=1e-3)  # cosine == PIE's score (fp16 storage)
    assert asyncio.run(emb.aembed_query("Write a poem")) == emb.embed_query("Write a poem")
    with pytest.raises(ValueError, match="Pass either encoder= or model options"):
        PIEEmbeddings("minilm", encoder=fake_encoder)
    with pytest.raises(TypeError, match="embed_query\\(\\) takes a string"):
        emb.embed_query(["x"])


def test_embeddings_from_retriever_share_the_encoder(pie):
    emb = PIEEmbeddings.from_retriever(pie)
    assert emb.encoder is pie.encoder


def test_embeddings_with_community_faiss_store(small_pool, fake_encoder):
    faiss_store = pytest.importorskip("langchain_community.vectorstores.faiss", reason="langchain-community not installed")
    emb = PIEEmbeddings(encoder=fake_encoder)
    texts = [d["instruction"] for d in small_pool]
    store = faiss_store.FAISS.from_texts(texts, emb, metadatas=[d["metadata"] for d in small_pool])
    pie = PIERetriever.from_demonstrations(small_pool, fake_encoder)
    found = store.similarity_search_with_score("Summarize the text about tax law.", k=3)
    hits = pie.retrieve("Summarize the text about tax law.", k=3)
    assert found[0][0].page_content == hits[0].demonstration.instruction
    # FAISS's default L2 distance on unit vectors is 2 - 2·cosine, so it ranks exactly like PIE's cosine
    assert [1 - d / 2 for _, d in found] == pytest.approx([h.score for h in hits], abs=1e-3)  # PIE stores fp16 vectors


def test_missing_langchain_names_the_extra():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n    import pie_retriever.integrations.langchain\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("MissingDependencyError") and 'pip install "pie-retriever[langchain]"' in out
