"""The `bench` command line (pie-retriever bench, benchmarks/run.py) and the thread policy of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pie_retriever.evaluation.bench import runner

REPO = Path(__file__).resolve().parents[3]


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_quality_only_lexical(tmp_path, capsys, benchmarks_module):
    main = benchmarks_module("run").main  # `pie-retriever bench` + the chart and tables of benchmarks/render.py

    rc = main(["--quick", "--sections", "quality", "--sets", "bundled", "--methods", "bm25,tfidf",
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
               "--name", "mine", "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "mine.json").read_text())
    assert list(data["quality"]["sets"]) == ["user:mine.jsonl"]
    assert "icl" not in data and "speed" not in data


@pytest.mark.slow
def test_quick_benchmark_smoke(tmp_path):
    """The whole `--quick` run (quality, ICL with SmolLM2, speed) as a user would start it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out-dir", str(tmp_path), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "bench-quick.json").read_text())
    assert {"quality", "icl", "speed"} <= set(data)
    assert data["icl"]["n_queries"] == 4
    assert [r["n"] for r in data["speed"]["per_size"]] == [500, 2000, 20000]
    assert "### Speed and memory" in done.stdout


def test_resolve_threads(monkeypatch):
    assert runner.resolve_threads(3) == (3, "--threads")
    assert runner.resolve_threads(None)[0] is None
    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    assert runner.resolve_threads("auto")[0] == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert runner.resolve_threads("auto")[0] is None
    # the benchmark's own previous section (2 busy threads) is not "other work"
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.5, 0.0, 0.0))
    assert runner.resolve_threads("auto")[0] == 1
    n, why = runner.resolve_threads("auto", own_load=2.0)
    assert n is None and "minus 2.0 of this run" in why
    with pytest.raises(Exception, match="threads must be"):
        runner.resolve_threads("many")
