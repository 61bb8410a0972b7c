"""Benchmark: ICL scoring and harness, quality sets and metrics, speed helpers, rendering, CLI smoke runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pie_retriever.evaluation import bench, icl, speed
from pie_retriever.types import Demonstration

REPO = Path(__file__).resolve().parents[1]


# -- ICL scoring -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("pred", "gold", "ok"), [
    ("positive", "positive", True),
    (" Positive.\n\n### Instruction:", "positive", True),
    ('"4.50 kg"', "4.5 kg", True),
    ("1,000", "1000", True),
    ("Hannah, Leo", "Hannah, Leo", True),
    ("Hannah Leo", "Hannah, Leo", False),
    ("The review is negative.", "negative", False),
    ("", "negative", False),
    ("not spam", "spam", False),
])
def test_exact_match(pred, gold, ok):
    assert icl.exact_match(pred, gold) is ok


def test_contains_answer_is_lenient_but_word_bounded():
    assert icl.contains_answer("The review is negative.", "negative")
    assert not icl.contains_answer("nonnegative", "negative")
    assert not icl.contains_answer("anything", "")


def test_rouge_l_matches_rouge_score():
    cases = [("the cat sat on the mat", "the cat is on the mat"), ("A B C", "c b a"), ("", "x"), ("Hello, world!", "hello world")]
    for pred, ref in cases:
        ours = icl.rouge_l(pred, ref)
        assert 0.0 <= ours <= 1.0
    assert icl.rouge_l("hello world", "hello world") == pytest.approx(1.0)
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for pred, ref in cases:
        assert icl.rouge_l(pred, ref) == pytest.approx(scorer.score(ref, pred)["rougeL"].fmeasure)


class EchoBackend:
    """Answers with the output of the last demonstration in the prompt (or 'none' without demonstrations)."""

    name = "echo"
    batch_size = 2

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, *, max_new_tokens, stop):
        self.calls += len(prompts)
        out = []
        for p in prompts:
            parts = p.split("### Response:\n")
            out.append(parts[-2].split("\n\n")[0] + "\n### next" if len(parts) > 2 else "none")
        return out


def _icl_pool():
    pool = [Demonstration(f"Classify the sentiment of review {i}.", f"review {i}", "positive", f"s{i}", {"task": "classify|sentiment"}) for i in range(4)]
    pool += [Demonstration(f"Write a poem about thing {i}.", "", f"a poem {i}", f"p{i}", {"task": "write|poem"}) for i in range(4)]
    queries = [Demonstration("Classify the sentiment of this new review.", "great", "positive", "q1", {"task": "classify|sentiment"}),
               Demonstration("Write a poem about the sea.", "", "a poem 2", "q2", {"task": "write|poem"})]
    return pool, queries


def test_run_icl_with_fake_backend_scores_and_dedupes_prompts():
    pool, queries = _icl_pool()
    oracle = icl.SameTaskRetriever(pool, {q.instruction: q.metadata["task"] for q in queries})
    backend = EchoBackend()
    report = icl.run_icl(pool, queries, {"none": None, "random": "random", "oracle": oracle, "oracle2": oracle}, backend,
                         k=2, show_progress=False)
    conds = report["conditions"]
    assert conds["none"]["score"] == 0.0
    assert np.isnan(conds["none"]["demo_task_match"])
    assert conds["oracle"]["demo_task_match"] == 1.0
    assert conds["oracle"]["exact_match"] == 1.0  # echoes a same-task output: "positive"
    assert 0.0 <= conds["oracle"]["rouge_l"] <= 1.0  # the poem query is free text
    assert report["n_short"] == 1 and report["n_free"] == 1
    # identical prompts (oracle == oracle2) are generated once
    assert backend.calls == report["n_generations"] < report["n_prompts"]
    rec = conds["oracle"]["records"][0]
    assert rec["prediction"] == "positive" and len(rec["demo_ids"]) == 2


def test_random_retriever_is_seeded_and_per_query():
    pool, _ = _icl_pool()
    a = icl.RandomRetriever(pool, seed=1).retrieve_batch(["q one", "q two"], k=3)
    b = icl.RandomRetriever(pool, seed=1).retrieve_batch(["q two", "q one"], k=3)
    assert [h.id for h in a[0]] == [h.id for h in b[1]]
    assert len({h.id for h in a[0]}) == 3


def test_run_icl_rejects_unknown_retriever_string():
    pool, queries = _icl_pool()
    with pytest.raises(ValueError, match="Unknown retriever string"):
        icl.run_icl(pool, queries, {"x": "bm25"}, EchoBackend(), show_progress=False)


def test_paired_bootstrap_interval_contains_mean():
    d = icl.paired_bootstrap([1, 1, 0, 1], [0, 1, 0, 0])
    assert d["diff"] == pytest.approx(0.5)
    assert d["lo"] <= d["diff"] <= d["hi"]


# -- quality ---------------------------------------------------------------------------------------
def _write_ieb(path: Path, groups: dict[str, list[str]]) -> None:
    data = {lab: {"number": len(xs), "samples": [{"category": lab.split("|"), "instruction": x, "input": x, "output": ""} for x in xs]}
            for lab, xs in groups.items()}
    path.write_text(json.dumps(data))


@pytest.fixture
def tiny_ieb(tmp_path):
    _write_ieb(tmp_path / "eft_test.json", {
        "write|poem": ["Write a poem about cats.", "Compose a poem on dogs.", "Write verses about rain."],
        "summarize|text": ["Summarize the text about cats.", "Summarize this article on dogs.", "Give a summary of the rain report."],
        "translate|sentence": ["Translate the sentence about cats to French.", "Translate this to German: dogs bark.", "Translate: rain falls."],
        "list|example": ["List examples of cats.", "List three dog breeds.", "Name examples of rain gear.", "List rainy cities."],
    })
    _write_ieb(tmp_path / "ift_test.json", {
        "write|poem": ["Write a poem about cats.", "Compose a poem on dogs."],
        "summarize|text": ["Summarize the text about cats.", "Summarize this article on dogs."],
        "list|example": ["List examples of cats."],
        "translate|sentence": ["Translate this to German: dogs bark.", "Translate: rain falls.", "Translate the sentence about cats."],
        **{f"do|thing{i}": [f"Do thing number {i} with the rain."] for i in range(10)},
    })
    return tmp_path


def test_load_sets_protocols(tiny_ieb):
    cfg = bench.BenchConfig(ieb_dir=str(tiny_ieb), sets=("ieb-eft", "ieb-ift", "bundled"))
    sets, skipped = bench.load_sets(cfg)
    assert not skipped
    eft, ift, bundled = sets
    assert eft.loo and len(eft.queries[0]) == 13
    assert list(eft.n_relevant()[:3]) == [2, 2, 2]
    # ift: one query per label with exactly two samples; the pool is all of ift_test (self excluded)
    q_texts, q_labels = ift.queries
    assert q_texts == ["Write a poem about cats.", "Summarize the text about cats."]
    assert list(ift.n_relevant()) == [1, 1]
    assert len(bundled.pool_texts) == 249 and len(bundled.query_texts) == 117


def test_missing_ieb_is_skipped_with_a_note(tmp_path):
    sets, skipped = bench.load_sets(bench.BenchConfig(ieb_dir=str(tmp_path), sets=("ieb-eft", "bundled")))
    assert [s.key for s in sets] == ["bundled"]
    assert "eft_test.json not found" in skipped[0]


def test_user_pool_needs_labels(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"instruction": f"Write a poem {i}", "kind": "poem" if i % 2 else "other"}) for i in range(6)))
    sets, _ = bench.load_sets(bench.BenchConfig(pool=str(pool), label_field="kind", sets=("user",)))
    assert sets[0].key == "user:pool.jsonl" and sets[0].loo and set(sets[0].pool_labels) == {"poem", "other"}
    with pytest.raises(Exception, match="no task label"):
        bench.load_sets(bench.BenchConfig(pool=str(pool), sets=("user",)))


def test_evaluate_ranking_known_values():
    es = bench.EvalSet("t", "", ["a1", "a2", "b1", "b2", "b3"], ["a", "a", "b", "b", "b"], loo=True)
    # perfect ranking for every query (self excluded), padded with wrong ones
    ranked = np.array([[1, 2, 3, 4], [0, 2, 3, 4], [3, 4, 0, 1], [2, 4, 0, 1], [2, 3, 0, 1]])
    m, p4 = bench.evaluate_ranking(es, ranked)
    assert m["p@1"] == 1.0 and m["mrr@10"] == 1.0
    assert m["p@4"] == pytest.approx((1 / 4 * 2 + 2 / 4 * 3) / 5)
    assert p4.shape == (5,)


def test_config_validation_lists_choices():
    with pytest.raises(Exception, match="choose from: quality, icl, speed"):
        bench.BenchConfig(sections=("qualty",))
    with pytest.raises(Exception, match="Unknown method"):
        bench.BenchConfig(methods=("bm26",))
    with pytest.raises(Exception, match="needs --pool"):
        bench.BenchConfig(sets=("user",))


def test_run_quality_lexical_on_bundled(tiny_ieb):
    cfg = bench.BenchConfig(ieb_dir=str(tiny_ieb), methods=("bm25", "tfidf"), sets=("ieb-eft", "bundled"), show_progress=False)
    sets, _ = bench.load_sets(cfg)
    out = bench.run_quality(cfg, sets)
    r = out["sets"]["bundled"]["results"]
    assert 0.0 < r["bm25"]["p@4"] <= 1.0 and r["bm25"]["n_queries"] == 117
    assert "p@4_minus_bm25" in r["tfidf"] and "p@4_minus_bm25" not in r["bm25"]


# -- speed helpers ---------------------------------------------------------------------------------
def test_synthetic_texts_are_distinct():
    out = speed.synthetic_texts(["a b", "c d", "a b"], 7)
    assert len(out) == 7 == len(set(out))
    assert out[:2] == ["a b", "c d"]


def test_perturbed_copies_are_unit_and_close():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = speed.perturbed_copies(v, 12)
    assert out.shape == (12, 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.allclose(out[:5], v, atol=1e-6)
    assert (np.sum(out[5:10] * v, axis=1) > 0.99).all()


def test_memory_probe_in_fresh_process():
    texts = [f"Instruction number {i} about something." for i in range(2000)]
    vecs = speed.perturbed_copies(np.eye(8, dtype=np.float32), 2000)
    pie = speed.memory_probe("pie", texts, vecs)
    bm = speed.memory_probe("bm25", texts)
    assert pie["retained"] > 2000 * 8 * 4  # at least the vectors
    assert bm["retained"] > 0


@pytest.fixture
def one_thread():
    """Small forward passes on a loaded 2-core machine are several times faster on one torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_naive_encode_agrees_with_core(minilm, one_thread):
    texts = ["Write a poem about cats.", "Summarize the following long article about the economy of France in two sentences.", "Hi"]
    core = minilm.encode(texts, prompt="pie")
    naive = speed.naive_encode(minilm, texts, prompt="pie", batch_size=2)
    assert (np.sum(core * naive, axis=1) > 0.995).all()


def test_run_speed_tiny(minilm, one_thread):
    base = [f"Write a short poem about topic {i}." for i in range(60)]
    out = speed.run_speed(minilm, base, ["Summarize the text.", "Translate this."], sizes=(20, 60, 200), encode_limit=60,
                          n_single=3, batch_queries=4, compare_texts=8, compare_rounds=1, matmul_seconds=0.05,
                          memory_sizes=(200,), show_progress=False)
    rows = {r["n"]: r for r in out["per_size"]}
    assert rows[60]["pie"]["encode_measured"] and not rows[200]["pie"]["encode_measured"]
    assert rows[200]["pie"]["rss_bytes_per_demo"] > 0 and rows[20]["pie"]["rss_bytes_per_demo"] is None
    assert rows[200]["pie"]["index_file_bytes_per_demo"] == pytest.approx(384 * 4 + 8, rel=0.05)
    assert out["encode_paths"]["speedup_core_vs_naive"] > 0
    assert 0 < out["encoder_flops"]["core_fraction_of_matmul"]
    assert out["encode_paths"]["cosine_core_vs_naive"]["min"] > 0.99


# -- rendering -------------------------------------------------------------------------------------
def _fake_results() -> dict:
    quality = {"methods": {"bm25": {"label": "BM25 (bm25s)"}, "default": {"label": "default model (pie-minilm)"}},
               "sets": {"bundled": {"description": "d", "protocol": "pool→query", "n_pool": 249, "n_labels": 30, "n_queries": 117,
                                    "results": {"bm25": {"p@1": 0.8, "p@4": 0.6, "ndcg@10": 0.6, "mrr@10": 0.8, "seconds": 0.1},
                                                "default": {"p@1": 0.9, "p@4": 0.9, "ndcg@10": 0.9, "mrr@10": 0.9, "seconds": 2.0,
                                                            "p@4_minus_bm25": {"diff": 0.3, "lo": 0.2, "hi": 0.4}}}}}}
    sizes = []
    for n in (1000, 10000):
        side = {"build_demos_per_s": 100.0, "single": {"p50_ms": 10.0, "p95_ms": 20.0, "n": 5}, "batched": {"queries_per_s": 50.0, "batch": 8},
                "rss_bytes_per_demo": 3000.0, "saved_bytes_per_demo": 1700.0}
        sizes.append({"n": n, "pie": {**side, "encode_measured": n == 1000, "index_file_bytes_per_demo": 1544.0,
                                      "search_only": {"p50_ms": 1.0}},
                      "bm25": {**side, "rss_bytes_per_demo": None}, "ratios": {"single_p50_pie_over_bm25": 2.0}})
    speed_ = {"model": "pie-minilm", "base_texts": {"source": "x", "unique": 10}, "encode_limit": 1000, "per_size": sizes,
              "query_encode": {"p50_ms": 9.0}, "peak_rss_bytes": 2**30, "process_peak_rss_bytes": 2**31,
              "matmul": {"bfloat16": {"shape": [2048, 2048, 2048], "flop_per_s": 1e11}},
              "encoder_flops": {"core_flop_per_s": 5e10, "core_fraction_of_matmul": 0.5, "reference_dtype": "bfloat16",
                                "core_fraction_of_model_shaped_matmul": 0.6},
              "encode_paths": {"core_uses_bf16": True, "n_texts": 64, "speedup_core_vs_naive": 2.5,
                               "texts_per_s": {"core": 200.0, "naive": 80.0}, "cosine_core_vs_naive": {"min": 0.9999}}}
    icl_ = {"k": 4, "n_queries": 2, "tasks": ["a"], "llm": {"backend": "transformers", "dtype": "float32"}, "n_generations": 3,
            "generation_s": 1.0, "labels": {"bm25": "BM25"},
            "conditions": {"bm25": {"score": 0.5, "contains": 0.5, "demo_task_match": 0.5},
                           "pie": {"score": 1.0, "contains": 1.0, "demo_task_match": 1.0, "minus_bm25": {"diff": 0.5, "lo": 0.0, "hi": 1.0}}}}
    return {"name": "bench", "config": {"quick": False}, "machine": {"cpu": "cpu", "cpu_count": 2, "load_average": [1.0]},
            "wall_s": 120, "quality": quality, "icl": icl_, "speed": speed_, "section_wall_s": {"quality": 60}}


def test_render_markdown_has_every_table():
    md = bench.render_markdown(_fake_results(), png_path="results/bench.png")
    assert "| default model (pie-minilm) | **0.900** | +0.300 [+0.200, +0.400] |" in md
    assert "| 1,000 | 100 | 100 | 10.0 / 20.0 |" in md
    assert "| 10,000 | 100* |" in md
    assert "**2.50×**" in md
    assert "![" in md and "results/bench.png" in md
    assert "exact match" in md


def test_update_readme_replaces_only_its_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# T\n<!-- core:start -->\ncore text\n<!-- core:end -->\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n")
    assert bench.update_readme(readme, "new table\n")
    text = readme.read_text()
    assert "core text" in text and "old" not in text and "new table" in text and text.endswith("tail\n")
    assert not bench.update_readme(readme, "new table\n")
    readme.write_text("no markers")
    with pytest.raises(Exception, match="bench:start"):
        bench.update_readme(readme, "x")


def test_plot_results_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = bench.plot_results(_fake_results(), tmp_path / "c.png")
    assert out is not None and out.stat().st_size > 1000


def test_render_readme_script(tmp_path):
    results = tmp_path / "bench.json"
    results.write_text(json.dumps(_fake_results()))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "render_readme.py"), "--results", str(results), "--readme", str(readme)],
                   check=True, capture_output=True)
    assert "Task-match quality" in readme.read_text()


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_quality_only_lexical(tmp_path, capsys):
    from pie_retriever.cli import main

    rc = main(["bench", "--quick", "--sections", "quality", "--sets", "bundled", "--methods", "bm25,tfidf",
               "--out-dir", str(tmp_path), "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "bench-quick.json").read_text())
    assert data["quality"]["sets"]["bundled"]["results"]["bm25"]["n_queries"] == 117
    assert (tmp_path / "bench-quick.png").is_file()
    assert "Task-match quality" in capsys.readouterr().out


def test_cli_user_pool(tmp_path):
    from pie_retriever.cli import main

    pool = tmp_path / "mine.jsonl"
    rows = [{"instruction": f"{verb} about {topic}.", "kind": verb} for verb in ("Write a poem", "Summarize a text", "Translate a line")
            for topic in ("cats", "dogs", "rain", "snow", "tea")]
    pool.write_text("\n".join(json.dumps(r) for r in rows))
    rc = main(["bench", "--pool", str(pool), "--label-field", "kind", "--methods", "bm25", "--out-dir", str(tmp_path),
               "--name", "mine", "--no-progress", "--no-chart"])
    assert rc == 0
    data = json.loads((tmp_path / "mine.json").read_text())
    assert list(data["quality"]["sets"]) == ["user:mine.jsonl"]
    assert "icl" not in data and "speed" not in data


@pytest.mark.slow
def test_quick_benchmark_smoke(tmp_path):
    """The whole `--quick` run (quality, ICL with SmolLM2, speed) as a user would start it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "pie_retriever.cli", "bench", "--quick", "--out-dir", str(tmp_path), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "bench-quick.json").read_text())
    assert {"quality", "icl", "speed"} <= set(data)
    assert data["icl"]["n_queries"] == 4
    assert [r["n"] for r in data["speed"]["per_size"]] == [500, 2000, 20000]
    assert "### Speed and memory" in done.stdout


def test_resolve_threads(monkeypatch):
    assert bench.resolve_threads(3) == (3, "--threads")
    assert bench.resolve_threads(None)[0] is None
    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    assert bench.resolve_threads("auto")[0] == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert bench.resolve_threads("auto")[0] is None
    # the benchmark's own previous section (2 busy threads) is not "other work"
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.5, 0.0, 0.0))
    assert bench.resolve_threads("auto")[0] == 1
    n, why = bench.resolve_threads("auto", own_load=2.0)
    assert n is None and "minus 2.0 of this run" in why
    with pytest.raises(Exception, match="threads must be"):
        bench.resolve_threads("many")


def test_trained_on_set_is_marked_in_the_table():
    res = _fake_results()
    res["quality"]["sets"]["ieb-ift"] = {**res["quality"]["sets"]["bundled"], "results": {
        "bm25": {"p@1": 0.3, "p@4": 0.15, "ndcg@10": 0.5, "mrr@10": 0.4},
        "default": {"p@1": 0.9, "p@4": 0.24, "ndcg@10": 0.9, "mrr@10": 0.9, "trained_on_set": True}}}
    md = bench.render_markdown(res)
    assert "0.240 †" in md and "not a held-out result" in md
