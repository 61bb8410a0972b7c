"""README rendering of benchmark results (benchmarks/render.py) and the render_readme.py script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def render(benchmarks_module):
    return benchmarks_module("render")


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


def test_render_markdown_has_every_table(render):
    md = render.render_markdown(_fake_results(), png_path="results/bench.png")
    assert "| default model (pie-minilm) | **0.900** | +0.300 [+0.200, +0.400] |" in md
    assert "| 1,000 | 100 | 100 | 10.0 / 20.0 |" in md
    assert "| 10,000 | 100* |" in md
    assert "**2.50×**" in md
    assert "![" in md and "results/bench.png" in md
    assert "exact match" in md


def test_update_readme_replaces_only_its_block(render, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# T\n<!-- core:start -->\ncore text\n<!-- core:end -->\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n")
    assert render.update_readme(readme, "new table\n")
    text = readme.read_text()
    assert "core text" in text and "old" not in text and "new table" in text and text.endswith("tail\n")
    assert not render.update_readme(readme, "new table\n")
    readme.write_text("no markers")
    with pytest.raises(Exception, match="bench:start"):
        render.update_readme(readme, "x")


def test_plot_results_writes_png(render, tmp_path):
    pytest.importorskip("matplotlib")
    out = render.plot_results(_fake_results(), tmp_path / "c.png")
    assert out is not None and out.stat().st_size > 1000


def test_render_readme_script(tmp_path):
    results = tmp_path / "bench.json"
    results.write_text(json.dumps(_fake_results()))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "render_readme.py"), "--results", str(results), "--readme", str(readme)],
                   check=True, capture_output=True)
    assert "Task-match quality" in readme.read_text()


def test_trained_on_set_is_marked_in_the_table(render):
    res = _fake_results()
    res["quality"]["sets"]["ieb-ift"] = {**res["quality"]["sets"]["bundled"], "results": {
        "bm25": {"p@1": 0.3, "p@4": 0.15, "ndcg@10": 0.5, "mrr@10": 0.4},
        "default": {"p@1": 0.9, "p@4": 0.24, "ndcg@10": 0.9, "mrr@10": 0.9, "trained_on_set": True}}}
    md = render.render_markdown(res)
    assert "0.240 †" in md and "not a held-out result" in md
