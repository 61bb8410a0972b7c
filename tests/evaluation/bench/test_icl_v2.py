"""ICL harness v2: the templated-prompt set, the dev/test split, the content oracle, the choice of content_weight,
and a whole run (dev sweep → choice → test table) with a fake LLM and a fake task encoder."""

from __future__ import annotations

from collections import Counter

import pytest

from pie_retriever.evaluation.bench import icl, icl_v2, templated
from pie_retriever.retrieval.content import BM25Content
from pie_retriever.types import Demonstration


# -- the templated set ---------------------------------------------------------------------------------
def test_templated_set_shape_and_trap():
    pool, queries = templated.templated_set()
    assert len(templated.TASKS) == 42 and len(templated.load_passages()) == 48
    assert len(pool) == len(queries) == 42 * 8
    assert Counter(d.metadata["task"] for d in pool) == Counter(dict.fromkeys(templated.TASKS, 8))
    own = {(d.metadata["task"], d.metadata["passage"]) for d in pool}
    elsewhere = {d.metadata["passage"] for d in pool}
    for q in queries:
        assert (q.metadata["task"], q.metadata["passage"]) not in own  # never in its own task's pool
        assert q.metadata["passage"] in elsewhere  # but in the pool under other tasks
    assert len({d.id for d in pool + queries}) == len(pool) + len(queries)
    assert templated.templated_set() == (pool, queries)  # deterministic


def test_templated_answers_follow_the_annotations():
    p = {"id": "x", "topic": "food", "sentiment": "negative", "person": "Nikos Pappas", "city": "Athens", "country": "Greece",
         "year": 1997, "text": "In 1997 a drought ruined the crop. He sold land."}
    t = templated.TASKS
    assert t["topic-digit"].answer(p, None) == "6"
    assert t["tone-stars"].answer(p, None) == "1"
    assert t["person-initials"].answer(p, None) == "N.P."
    assert t["person-reverse"].answer(p, None) == "Pappas, Nikos"
    assert t["decade"].answer(p, None) == "1990s" and t["century"].answer(p, None) == "20th"
    assert t["year-shortform"].answer(p, None) == "'97"
    assert t["first-word"].answer(p, None) == "In" and t["last-word"].answer(p, None) == "land"
    assert t["sentence-count"].answer(p, None) == "2"
    assert t["city-yesno"].answer(p, "Athens") == "yes" and t["city-yesno"].answer(p, "Paris") == "no"
    for task in t.values():
        assert "{text}" in task.template and ("{asked}" in task.template) == (task.asks is not None)


def test_passages_name_one_year_person_and_city():
    import re

    for p in templated.load_passages():
        assert len(re.findall(r"\b(1[0-9]{3}|20[0-9]{2})\b", p["text"])) == 1
        assert p["person"].split()[-1] in p["text"] and p["city"] in p["text"]
        assert p["topic"] in templated.TOPICS and p["sentiment"] in ("positive", "negative")


# -- split, oracle, choice -----------------------------------------------------------------------------
def test_split_is_per_task_disjoint_and_seeded():
    _, queries = templated.templated_set()
    dev, test = icl_v2.split_queries(queries, seed=0)
    assert len(dev) == len(test) == len(queries) // 2
    assert not {q.id for q in dev} & {q.id for q in test}
    assert Counter(q.metadata["task"] for q in dev) == Counter(q.metadata["task"] for q in test)
    assert icl_v2.split_queries(list(reversed(queries)), seed=0) == (dev, test)
    assert icl_v2.split_queries(queries, seed=1) != (dev, test)


def test_content_oracle_keeps_the_task_and_ranks_by_content():
    pool = [Demonstration("Summarize.", "cats sleep all day", "x", "a", {"task": "sum"}),
            Demonstration("Summarize.", "taxes are due in april", "y", "b", {"task": "sum"}),
            Demonstration("Translate.", "taxes are due in april", "z", "c", {"task": "tr"})]
    query = "Summarize: taxes due"
    oracle = icl.ContentOracleRetriever(pool, {query: "sum"}, BM25Content())
    hits = oracle.retrieve_batch([query], k=2)[0]
    assert [h.id for h in hits] == ["b", "a"]


def test_choose_weight_rule():
    pooled = {"pie": {"score": 0.5}, "pie+bm25@0.25": {"score": 0.6}, "pie+minilm@0.25": {"score": 0.6},
              "pie+bm25@0.5": {"score": 0.55}, "pie+minilm@0.5": {"score": 0.7}}
    assert icl_v2.choose_weight(pooled, ["minilm", "bm25"], [0.25, 0.5]) == ("minilm", 0.5)
    pooled["pie+minilm@0.5"]["score"] = 0.6
    assert icl_v2.choose_weight(pooled, ["minilm", "bm25"], [0.25, 0.5]) == ("bm25", 0.25)  # tie: lower weight, cheaper scorer
    flat = {c: {"score": 0.5} for c in pooled}
    assert icl_v2.choose_weight(flat, ["bm25", "minilm"], [0.25, 0.5]) == ("bm25", 0.0)  # nothing beats task-only


# -- a whole run with fakes ----------------------------------------------------------------------------
class LastDemoBackend:
    """Answers with the output of the last demonstration of the prompt ('none' without one)."""

    name = "fake"

    def generate(self, prompts, *, max_new_tokens, stop):
        out = []
        for p in prompts:
            parts = p.split("### Response:\n")
            out.append(parts[-2].split("\n\n")[0] if len(parts) > 2 else "none")
        return out


class FakeModels:
    def __init__(self, task_model):
        from pie_retriever.encoders.hashing import HashingEncoder

        self.task_name = "hashing"
        self.task = HashingEncoder(dim=64)
        self.minilm = HashingEncoder(dim=32)

    def scorer(self, name):
        from pie_retriever.retrieval.content import DenseContent

        return DenseContent(self.minilm) if name == "minilm" else BM25Content()


def test_run_icl_v2_with_fakes(monkeypatch):
    import pie_retriever.evaluation.bench.backends as backends

    monkeypatch.setattr(icl_v2, "_Models", FakeModels)
    monkeypatch.setattr(backends, "make_backend", lambda kind, model, **kw: LastDemoBackend())
    cfg = icl_v2.ICLv2Config(limit=6, weights=(0.5, 1.0), show_progress=False)
    res = icl_v2.run_icl_v2(cfg, log=lambda s: None)
    assert res["sizes"]["templated"]["dev"] == 6 and res["sizes"]["bundled"]["test"] == 6
    dev_rows, test_rows = set(res["dev"]["pooled"]), set(res["test"]["pooled"])
    assert {"none", "random", "bm25", "minilm", "pie", "oracle", "oracle+bm25", "oracle+minilm",
            "pie+bm25@0.5", "pie+minilm@1"} <= dev_rows
    chosen = res["chosen"]["condition"]
    assert {"none", "random", "bm25", "minilm", "pie", chosen, "oracle", f"oracle+{res['chosen']['scorer']}"} <= test_rows
    assert res["test"]["pooled"]["oracle"]["task_match"] == 1.0
    row = res["test"]["pooled"]["bm25"]
    assert row["n"] == 12 and row["minus_pie"]["lo"] <= row["minus_pie"]["diff"] <= row["minus_pie"]["hi"]
    assert set(res["task_match"]) == {"bundled", "templated"}
    table = icl_v2.format_tables(res)
    assert "**test split** (12 queries)" in table and "oracle: same task, random" in table
    rec = res["test"]["sets"]["templated"]["conditions"]["pie"]["records"][0]
    assert set(rec) == {"query_id", "task", "kind", "score", "demo_task_match", "demo_ids", "prediction"}


def test_unknown_icl_set_is_refused():
    with pytest.raises(ValueError, match="bundled"):
        icl_v2.load_icl_set("nope")
