"""`pie-retriever search --queries`, `add`, `delete`, `--threads`, `--version`, resolvable model paths (real MiniLM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pie_retriever import PIERetriever
from pie_retriever._threads import available_cores, resolve_threads, torch_threads
from pie_retriever.cli import main
from pie_retriever.errors import ConfigError

SMALL_POOL = [
    {"id": "p1", "instruction": "Write a poem about the ocean.", "metadata": {"task": "write|poem", "topic": "ocean"}},
    {"id": "p2", "instruction": "Compose a haiku about taxes.", "metadata": {"task": "write|poem", "topic": "taxes"}},
    {"id": "s1", "instruction": "Summarize this article about the ocean.", "metadata": {"task": "summarize|article", "topic": "ocean"}},
    {"id": "s2", "instruction": "Summarize the text about tax law.", "metadata": {"task": "summarize|article", "topic": "taxes"}},
    {"id": "t1", "instruction": "Translate this sentence about the ocean into French.", "metadata": {"task": "translate|sentence", "topic": "ocean"}},
    {"id": "t2", "instruction": "Translate into German: taxes are due in April.", "metadata": {"task": "translate|sentence", "topic": "taxes"}},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    pool = root / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(d) for d in SMALL_POOL) + "\n", encoding="utf-8")
    assert main(["index", str(pool), "-o", str(root / "idx"), "--model", "minilm", "--threads", "1"]) == 0
    return root


def _copy_index(built: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(built / "idx", tmp_path / "idx"))


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("pie-retriever 0.")


def test_search_queries_file_batched_one_load(built, tmp_path, capsys):
    queries = ["Compose a poem about the sea", "Summarize this report", "Translate 'hello' into Spanish"]
    text = tmp_path / "q.txt"
    text.write_text("\n".join(queries) + "\n\n", encoding="utf-8")
    out = tmp_path / "picks.jsonl"
    assert main(["search", str(built / "idx"), "--queries", str(text), "-o", str(out), "-k", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["query"] for r in rows] == queries
    assert all([h["rank"] for h in r["hits"]] == [1, 2] for r in rows)
    r = PIERetriever.load(built / "idx")
    for row, q in zip(rows, queries):
        assert [h["id"] for h in row["hits"]] == [h.id for h in r.retrieve(q, k=2)]
    # a JSONL pool file gives its instructions; without -o the JSON lines go to stdout
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("\n".join(json.dumps({"instruction": q}) for q in queries), encoding="utf-8")
    capsys.readouterr()
    assert main(["search", str(built / "idx"), "--queries", str(jsonl), "-k", "1", "--filter", "task=write|poem"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(x)["hits"][0]["metadata"]["task"] == "write|poem" for x in lines)


def test_search_json_rank_is_one_based(built, capsys):
    assert main(["search", str(built / "idx"), "Compose a poem about the sea", "-k", "3", "--json"]) == 0
    assert [h["rank"] for h in json.loads(capsys.readouterr().out)] == [1, 2, 3]


def test_add_and_delete(built, tmp_path, capsys, monkeypatch):
    idx = _copy_index(built, tmp_path)
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "n1", "instruction": "Write a sonnet about rain.", "metadata": {"task": "write|poem", "topic": "rain"}}) + "\n")
    assert main(["add", str(idx), str(more)]) == 0
    assert "Added 1 demonstrations" in capsys.readouterr().err
    assert "n1" in PIERetriever.load(idx)
    # delete embeds nothing, so it must not load the model
    from pie_retriever.encoders import transformer

    def _no_model(*args, **kwargs):
        raise AssertionError("delete loaded the model")

    monkeypatch.setattr(transformer.TransformerEncoder, "__init__", _no_model)
    assert main(["delete", str(idx), "n1", "p1"]) == 0
    assert "Deleted 2 demonstrations; 5 left" in capsys.readouterr().err
    assert main(["delete", str(idx), "nope"]) == 1
    assert "Unknown demonstration id(s) ['nope']; nothing was deleted" in capsys.readouterr().err
    monkeypatch.undo()
    r = PIERetriever.load(idx)
    assert len(r) == 5 and "n1" not in r and "p1" not in r
    assert main(["add", str(idx), str(more)]) == 0  # re-adding a deleted id works; the saved index still searches
    assert [h.id for h in PIERetriever.load(idx).retrieve("Write a sonnet about rain.", k=1)] == ["n1"]


def test_index_stores_absolute_model_path(tmp_path, monkeypatch):
    from pie_retriever.encoders.models import resolve_model

    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    (work / "models" / "mini").symlink_to(resolve_model("minilm").path, target_is_directory=True)
    (work / "pool.jsonl").write_text("\n".join(json.dumps(d) for d in SMALL_POOL), encoding="utf-8")
    monkeypatch.chdir(work)
    assert main(["index", "pool.jsonl", "-o", "idx", "--model", "models/mini"]) == 0
    saved = json.loads((work / "idx" / "manifest.json").read_text())["encoder"]["model"]
    assert os.path.isabs(saved) and Path(saved) == resolve_model("minilm").path.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["search", str(work / "idx"), "Compose a poem", "-k", "1"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "IDX"], "either one QUERY or --queries FILE"),
        (["search", "IDX", "q", "--queries", "f.txt"], "either one QUERY or --queries FILE"),
        (["search", "IDX", "q", "-o", "x.jsonl"], "-o/--output is for --queries"),
        (["search", "IDX", "--queries", "Q", "-o", "TMP"], "is a folder; give a file name"),
        (["search", "IDX", "q", "--filter", "task"], "quote values that hold |"),
        (["search", "IDX", "q", "--threads", "0"], "threads must be a positive integer, got 0"),
        (["add", "IDX", "missing.jsonl"], "does not exist"),
        (["search", "IDX", "--queries", "Q", "--content-query", "x"], "--content-query goes with one QUERY"),
        (["search", "IDX", "q", "--content-weight", "1.5"], "content_weight must be"),
    ],
)
def test_cli_errors_one_line(built, tmp_path, capsys, argv, message):
    q = tmp_path / "q.txt"
    q.write_text("Write a poem\n")
    subst = {"IDX": str(built / "idx"), "Q": str(q), "TMP": str(tmp_path)}
    assert main([subst.get(a, a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_thread_policy():
    assert resolve_threads(None, 1) == 1
    assert resolve_threads(None, 50) == available_cores()
    assert resolve_threads(3, 1) == 3
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        resolve_threads(0, 1)
    import torch

    before = torch.get_num_threads()
    with torch_threads(None, 1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "pie_retriever.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("index", "search", "add", "delete", "demo", "label", "train", "eval", "bench"):
        assert cmd in out
    out = subprocess.run([sys.executable, "-m", "pie_retriever.cli", "search", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--queries" in out and "--threads" in out


def test_content_weight_flags_index_and_search(built, tmp_path, capsys):
    """`index --content-weight/--content-scorer` store the retriever's default; `search --content-weight
    --content-query` re-rank the task candidates by content for one call."""
    pool = built / "pool.jsonl"
    idx = tmp_path / "idx-content"
    assert main(["index", str(pool), "-o", str(idx), "--model", "minilm", "--threads", "1",
                 "--content-weight", "0.25", "--content-scorer", "bm25"]) == 0
    manifest = json.loads((idx / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["content"]["weight"] == 0.25 and manifest["content"]["scorer"] == "bm25"
    capsys.readouterr()

    def top(*extra: str) -> str:
        assert main(["search", str(built / "idx"), "Write a poem", "-k", "1", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)[0]["id"]

    assert top() == "p1"  # task match alone: the closest poem
    assert top("--content-weight", "0.5", "--content-query", "taxes") == "p2"  # the poem whose content is taxes
    none = tmp_path / "idx-none"
    assert main(["index", str(pool), "-o", str(none), "--model", "minilm", "--content-scorer", "none"]) == 0
    assert json.loads((none / "manifest.json").read_text(encoding="utf-8"))["content"]["scorer"] is None
