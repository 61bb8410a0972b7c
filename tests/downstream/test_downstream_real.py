"""End to end with the real default model (DEFAULT_MODEL), plain MiniLM, the labeler and UMAP; and the docs snippet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pie_retriever import cli
from pie_retriever.encoders.models import DEFAULT_MODEL
from pie_retriever.pool.pools import bundled_pool_path

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parents[2] / "docs" / "downstream.md"


def test_select_and_map_with_real_models(tmp_path, capsys):
    out, rep = tmp_path / "sub.jsonl", tmp_path / "rep.json"
    assert cli.main(["select", str(bundled_pool_path()), "--budget", "30", "-o", str(out), "--report", str(rep), "--seeds", "5"]) == 0
    report = json.loads(rep.read_text())
    assert report["model"] == DEFAULT_MODEL and report["baseline_model"] == "minilm"
    assert report["selected"]["n_selected"] == 30 and report["baseline"]["n_selected"] == 30
    assert report["selected"]["distinct"] >= 18  # of 30 tasks, picking 30 of 249 instructions
    assert f"kmeans on {DEFAULT_MODEL}" in capsys.readouterr().out
    png = tmp_path / "map.png"
    assert cli.main(["map", str(bundled_pool_path()), "-o", str(png), "--html"]) == 0  # UMAP (auto)
    err = capsys.readouterr().err
    assert "30 groups by task" in err and "left off" not in err  # every task named, no overlaps
    assert png.stat().st_size > 30000 and (tmp_path / "map.html").is_file()


def test_docs_snippet_runs(tmp_path, monkeypatch):
    text = DOCS.read_text(encoding="utf-8")
    section = re.search(r"<!-- downstream:start -->(.*?)<!-- downstream:end -->", text, flags=re.S)
    assert section, "docs/downstream.md has no downstream snippet markers"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(DOCS), "exec"), namespace)
    assert len(namespace["picked"]) == 30 and namespace["small"].weights.sum() == 249
    assert namespace["found"]["k"] == 30 and (tmp_path / "map.png").is_file()
