"""Loading pools and indexes into vectors, label sources, and the five subcommands end to end (hashing encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pie_retriever import cli
from pie_retriever.downstream import embed
from pie_retriever.downstream.embed import encode_texts, load_items, task_labels
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import ConfigError
from pie_retriever.pool.pools import bundled_pool_path, load_bundled_pool


@pytest.fixture
def hashing(monkeypatch):
    """Every subcommand embeds with the deterministic hashing encoder (no torch)."""
    enc = HashingEncoder(dim=64)
    monkeypatch.setattr(embed, "make_encoder", lambda model=None: enc)
    monkeypatch.setattr("pie_retriever.downstream.cli.make_encoder", lambda model=None: enc)
    return enc


def test_load_items_from_list_file_and_index(tmp_path, small_pool):
    enc = HashingEncoder(dim=32)
    items = load_items(small_pool, enc)
    assert len(items) == 6 and items.vectors.shape == (6, 32) and items.encoder_name == "hashing"
    assert np.allclose(np.linalg.norm(items.vectors, axis=1), 1.0)
    from pie_retriever import PIERetriever

    r = PIERetriever.from_demonstrations(small_pool, enc)
    r.save(tmp_path / "pool.pie")
    from_index = load_items(tmp_path / "pool.pie")  # the stored vectors, no model given
    order = [d.id for d in from_index.demos]
    assert sorted(order) == sorted(d["id"] for d in small_pool)
    expected = enc.encode_documents([d.instruction for d in from_index.demos])
    assert np.allclose(from_index.vectors, expected, atol=1e-6)


def test_encode_cache_skips_the_encoder(tmp_path):
    enc = HashingEncoder(dim=16)
    a = encode_texts(["one", "two"], enc, cache_dir=tmp_path)
    calls = enc.calls
    b = encode_texts(["one", "two"], enc, cache_dir=tmp_path)
    # exact: the second call reads the .npy the first one wrote (same bytes), it does not encode again
    assert enc.calls == calls and np.array_equal(a, b) and len(list(tmp_path.glob("*.npy"))) == 1
    encode_texts(["one", "three"], enc, cache_dir=tmp_path)
    assert enc.calls == calls + 1


def test_task_labels_sources(small_pool):
    demos = load_items(small_pool, HashingEncoder(dim=8)).demos
    assert task_labels(demos) == [d["metadata"]["task"] for d in small_pool]
    demos[0].metadata.pop("task")
    with pytest.raises(ConfigError, match="1 of 6 demonstrations have no metadata.task"):
        task_labels(demos, "gold")
    with pytest.raises(ConfigError, match="Unknown label source 'llm'"):
        task_labels(demos, "llm")
    with pytest.raises(ConfigError, match="model must be None, a model spec"):
        embed.make_encoder(42)


def test_cli_select(tmp_path, hashing, capsys):
    out, rep = tmp_path / "sub.jsonl", tmp_path / "rep.json"
    assert cli.main(["select", str(bundled_pool_path()), "--budget", "30", "-o", str(out), "--report", str(rep),
                     "--baseline-model", "none", "--seeds", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30
    table = capsys.readouterr().out
    assert "Task coverage at budget 30 (30 labels in the pool" in table and "random (3 seeds)" in table
    report = json.loads(rep.read_text())
    assert report["selected"]["n_selected"] == 30 and report["random"]["runs"] == 3 and "baseline" not in report


def test_cli_select_errors(tmp_path, hashing, capsys):
    assert cli.main(["select", str(bundled_pool_path()), "--budget", "5000", "-o", str(tmp_path / "s.jsonl"), "--labels", "none"]) == 1
    assert "budget=5000 exceeds the pool size (249)" in capsys.readouterr().err
    assert cli.main(["select", str(bundled_pool_path()), "--budget", "5", "-o", str(tmp_path / "no" / "s.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_compress(tmp_path, hashing, capsys):
    out = tmp_path / "small.jsonl"
    assert cli.main(["compress", str(bundled_pool_path()), "--ratio", "0.1", "-o", str(out), "--seeds", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 25 and sum(r["metadata"]["weight"] for r in rows) == pytest.approx(249)
    assert "task distribution distance (TV)" in capsys.readouterr().out


def test_cli_compare(tmp_path, hashing, capsys):
    pool = load_bundled_pool()
    half = tmp_path / "half.jsonl"
    half.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in pool[:100]))
    png = tmp_path / "corr.png"
    assert cli.main(["compare", f"pool={bundled_pool_path()}", str(half), "-o", str(png)]) == 0
    res = json.loads((tmp_path / "corr.json").read_text())
    assert res["names"] == ["pool", "half"] and res["sizes"] == [249, 100]
    assert res["coverage"][1][0] == pytest.approx(1.0)  # the pool contains half
    assert png.stat().st_size > 10000 and "coverage (row set vs column set)" in capsys.readouterr().out
    assert cli.main(["compare", str(half), str(half), "-o", str(png)]) == 1
    assert "Two sets are named 'half'" in capsys.readouterr().err


def test_cli_map_and_tasks(tmp_path, hashing, capsys):
    png = tmp_path / "map.png"
    assert cli.main(["map", str(bundled_pool_path()), "-o", str(png), "--projection", "tsne", "--html"]) == 0
    assert png.stat().st_size > 10000 and (tmp_path / "map.html").read_text().count("<circle") == 249
    assert "30 groups by task" in capsys.readouterr().err
    out = tmp_path / "tasks.json"
    assert cli.main(["tasks", str(bundled_pool_path()), "--clusters", "12", "-o", str(out), "--limit", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("12 task clusters in 249 instructions (--clusters; hashing)") and "… and 7 more clusters" in printed
    res = json.loads(out.read_text())
    assert res["k"] == 12 and sum(c["size"] for c in res["clusters"]) == 249 and len(res["assign"]) == 249
    assert all("|" in c["label"] for c in res["clusters"])  # named by the labeler's verb|noun


@pytest.mark.parametrize("old", ["_cli", "cli_select", "cli_compress", "cli_compare", "cli_map", "cli_tasks"])
def test_old_cli_module_paths_alias_the_one_cli_module(old):
    import importlib
    import sys

    from pie_retriever.downstream import cli as downstream_cli

    sys.modules.pop(f"pie_retriever.downstream.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"pie_retriever.downstream.{old} moved to pie_retriever.downstream.cli"):
        module = importlib.import_module(f"pie_retriever.downstream.{old}")
    assert module is downstream_cli
