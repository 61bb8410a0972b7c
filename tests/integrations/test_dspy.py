"""DSPy integration with the real dspy library: KNNFewShot with PIEEmbedder, PIEKNN (trainset, saved index,
filters), PIEKNNFewShot and PIERetrieve. No LM is called (``max_bootstrapped_demos=0``)."""

from __future__ import annotations

import pytest

dspy = pytest.importorskip("dspy")

from pie_retriever import PIERetriever, load_bundled_pool, load_bundled_queries  # noqa: E402
from pie_retriever.encoders.hashing import HashingEncoder  # noqa: E402
from pie_retriever.integrations.dspy import PIEKNN, PIEEmbedder, PIEKNNFewShot, PIERetrieve, field_value  # noqa: E402


class Recorder(dspy.Module):
    """A student whose forward returns the demonstrations DSPy attached to its predictor (no LM call)."""

    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict("instruction -> output")

    def forward(self, instruction: str) -> dspy.Prediction:
        return dspy.Prediction(output="", demos=list(self.predict.demos))


def _trainset():
    return [dspy.Example(instruction=d.instruction, output=d.output, task=d.metadata["task"], topic=d.metadata["topic"]).with_inputs("instruction")
            for d in load_bundled_pool()]


def test_field_value():
    assert field_value("instruction: Write a poem | input: a | b: c") == "Write a poem"
    assert field_value("input: x | instruction: Do it: now", "instruction") == "Do it: now"
    assert field_value("no fields here") == "no fields here"


def test_embedder_embeds_the_instruction_only():
    seen: list[list[str]] = []
    enc = HashingEncoder(dim=64)
    original = enc.encode

    def spy(texts, **kwargs):
        seen.append(list(texts))
        return original(texts, **kwargs)

    enc.encode = spy
    embedder = PIEEmbedder(enc)
    vectors = embedder(["instruction: Write a poem | input: about cats", "Summarize this"])
    assert vectors.shape == (2, 64)
    assert seen == [["Write a poem", "Summarize this"]]
    knn = dspy.KNN(k=2, trainset=_trainset()[:20], vectorizer=embedder)
    assert len(knn(instruction="Write a poem")) == 2
    assert all(not t.startswith("instruction:") for batch in seen for t in batch)


def test_knnfewshot_with_pie_embedder_attaches_task_matched_demos():
    tele = dspy.KNNFewShot(k=4, trainset=_trainset(), vectorizer=PIEEmbedder(HashingEncoder(dim=64)), max_bootstrapped_demos=0)
    pred = tele.compile(Recorder())(instruction="Write a limerick about tax law.")
    assert len(pred.demos) == 4
    assert sum(d.task == "write|poem" for d in pred.demos) >= 2


def test_pieknn_trainset_filter_batch_and_saved_index(tmp_path):
    train = _trainset()
    knn = PIEKNN(3, train, model=HashingEncoder(dim=64), filter={"topic": "ocean"})
    examples = knn(instruction="Write a poem")
    assert len(examples) == 3 and all(e.topic == "ocean" for e in examples)
    assert all(any(e is t for t in train) for e in examples)  # the trainset's own Example objects come back
    assert [len(x) for x in knn.batch([{"instruction": "Write a poem"}, {"instruction": "Summarize"}])] == [3, 3]
    assert [h.demonstration.metadata["topic"] for h in knn.hits(instruction="Write a poem")] == ["ocean"] * 3

    pool = PIERetriever.from_demonstrations(load_bundled_pool(), HashingEncoder(dim=64))
    pool.save(tmp_path / "pool.pie")
    saved = PIEKNN.from_index(tmp_path / "pool.pie", k=2, filter={"task": "write|poem"})
    examples = saved(instruction="Summarize the article about taxes.")
    assert [e.task for e in examples] == ["write|poem", "write|poem"]
    assert set(examples[0].inputs().keys()) == {"instruction"} and examples[0].output
    with pytest.raises(ValueError, match="either trainset= .* or retriever="):
        PIEKNN(2)


def test_pieknnfewshot_compiles_and_filters():
    tele = PIEKNNFewShot(4, _trainset(), model=HashingEncoder(dim=64), filter={"task": ["write|poem"]}, max_bootstrapped_demos=0)
    pred = tele.compile(Recorder())(instruction="Summarize the tax article.")
    assert [d.task for d in pred.demos] == ["write|poem"] * 4


def test_pie_retrieve_module(tmp_path):
    pool = PIERetriever.from_demonstrations(load_bundled_pool(), HashingEncoder(dim=64))
    retrieve = PIERetrieve(pool, k=2)
    assert isinstance(retrieve, dspy.Retrieve)
    pred = retrieve("Write a poem about the sea")
    assert len(pred.passages) == 2 and len(pred.scores) == 2 and pred.ids[0] == pred.demonstrations[0].id
    assert pred.passages[0].startswith(pred.demonstrations[0].instruction)
    pred = retrieve("Write a poem", k=3, filter={"task": "summarize|text"})
    assert len(pred.passages) == 3 and {d.metadata["task"] for d in pred.demonstrations} == {"summarize|text"}
    pool.save(tmp_path / "p.pie")
    assert PIERetrieve(tmp_path / "p.pie", k=1)("Write a poem").ids == retrieve("Write a poem", k=1).ids
    with pytest.raises(TypeError, match="Unknown option"):
        retrieve("q", fetch=3)


@pytest.mark.slow
def test_task_match_real_model_beats_dspy_default_embedding():
    """KNNFewShot on the bundled pool with the default model: PIEEmbedder (instruction only) vs dspy.Embedder on
    DSPy's "instruction: ..." strings (the same model). The figures in docs/dspy.md come from benchmarks/own_pool.py."""
    from pie_retriever.encoders.transformer import TransformerEncoder

    enc = TransformerEncoder()
    train = _trainset()
    queries = load_bundled_queries()[:40]

    def match(vectorizer):
        knn = dspy.KNN(k=4, trainset=train, vectorizer=vectorizer)
        return sum(e.task == q.metadata["task"] for q in queries for e in knn(instruction=q.instruction)) / (4 * len(queries))

    pie, default = match(PIEEmbedder(enc)), match(dspy.Embedder(enc.encode, caching=False))
    assert pie >= default and pie > 0.7, (pie, default)
