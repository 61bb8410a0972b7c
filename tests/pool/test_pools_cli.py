"""Pool files (every supported shape and the ways they go wrong) and the CLI."""

import json
import subprocess
import sys

import pytest

from pie_retriever.cli import main
from pie_retriever.errors import PoolFormatError
from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries, load_pool


def _write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_jsonl_json_alpaca_and_ieb_shapes(tmp_path, small_pool):
    jsonl = _write(tmp_path, "pool.jsonl", "\n".join(json.dumps(d) for d in small_pool) + "\n\n")
    assert [d.id for d in load_pool(jsonl)] == [d["id"] for d in small_pool]
    as_list = _write(tmp_path, "pool.json", json.dumps(small_pool))
    assert len(load_pool(as_list)) == 6
    alpaca = _write(tmp_path, "alpaca.json", json.dumps([{"instruction": "Give three tips.", "input": "", "output": "1. ..."}]))
    assert load_pool(alpaca)[0].output == "1. ..."
    ieb = _write(tmp_path, "ieb.json", json.dumps({"write|poem": {"number": 1, "samples": [
        {"category": ["write", "poem"], "instruction": "Write a poem.", "input": "Write a poem. About cats", "output": "..."}]}}))
    d = load_pool(ieb)[0]
    assert d.metadata["task"] == "write|poem" and d.input == "About cats" and d.metadata["category"] == ["write", "poem"]


def test_label_field(tmp_path):
    p = _write(tmp_path, "p.jsonl", json.dumps({"instruction": "x", "kind": "a|b"}) + "\n")
    assert load_pool(p, label_field="kind")[0].metadata["task"] == "a|b"
    with pytest.raises(PoolFormatError, match="has no label field 'label'"):
        load_pool(p, label_field="label")


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("bad.jsonl", '{"instruction": "ok"}\n{"instruction": "broken"\n', r"bad.jsonl, line 2: malformed JSON"),
        ("bad.json", '[{"instruction": "ok"},', r"is not valid JSON: .* at line 1"),
        ("shape.json", '{"data": [1, 2]}', r"neither a demonstration nor IEB's"),
        ("number.json", "42", r"line 1: expected a JSON object with an .instruction. key, got int"),
        ("items.json", '["a", 3]', r"item 1: expected a JSON object"),
        ("noinstr.jsonl", '{"prompt": "x"}\n', r"line 1: Demonstration dict has no 'instruction' key"),
        ("none.jsonl", '{"instruction": null}\n', r"line 1: Demonstration.instruction must be a string, got NoneType"),
        ("empty.jsonl", "\n\n", r"is empty"),
        ("empty_list.json", "[]", r"contains no demonstrations"),
    ],
)
def test_malformed_pools(tmp_path, name, content, pattern):
    with pytest.raises(PoolFormatError, match=pattern):
        load_pool(_write(tmp_path, name, content))


def test_non_utf8_and_missing(tmp_path):
    p = _write(tmp_path, "latin.jsonl", '{"instruction": "caf\xe9"}\n'.encode("latin-1"), mode="wb")
    with pytest.raises(PoolFormatError, match=r"is not UTF-8 \(bad byte 0xe9 on line 1\)"):
        load_pool(p)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pool(tmp_path / "nope.jsonl")


def test_bundled_pool_is_a_topic_trap():
    pool, queries = load_bundled_pool(), load_bundled_queries()
    tasks = {d.metadata["task"] for d in pool}
    assert len(pool) >= 200 and len(tasks) >= 25
    topics_per_task = {t: {d.metadata["topic"] for d in pool if d.metadata["task"] == t} for t in tasks}
    assert min(len(v) for v in topics_per_task.values()) >= 3
    tasks_per_topic = {}
    for d in pool:
        tasks_per_topic.setdefault(d.metadata["topic"], set()).add(d.metadata["task"])
    assert min(len(v) for v in tasks_per_topic.values()) >= 3
    assert not {q.instruction for q in queries} & {d.instruction for d in pool}
    assert {q.metadata["task"] for q in queries} <= tasks


def test_cli_index_search_json_roundtrip(tmp_path, small_pool, capsys):
    pool = _write(tmp_path, "pool.jsonl", "\n".join(json.dumps(d) for d in small_pool))
    out = tmp_path / "idx"
    assert main(["index", str(pool), "-o", str(out), "--model", "minilm"]) == 0
    assert (out / "manifest.json").is_file() and (out / "index.faiss").is_file()
    capsys.readouterr()
    assert main(["search", str(out), "Compose a poem about the sea", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3
    assert set(hits[0]) == {"rank", "score", "id", "instruction", "input", "output", "metadata"}
    assert hits[0]["rank"] == 1 and hits[0]["id"] == "p1"  # the CLI ranks from 1, like its text output
    assert main(["search", str(out), "Compose a poem", "-k", "2", "--filter", "task=translate|sentence", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {h["metadata"]["task"] for h in hits} == {"translate|sentence"}
    # the same query from Python gives the same ranking
    from pie_retriever import PIERetriever

    r = PIERetriever.load(out)
    assert [h.id for h in r.retrieve("Compose a poem", k=2, filter={"task": "translate|sentence"})] == [h["id"] for h in hits]
    assert main(["search", str(out), "Compose a poem"]) == 0
    assert "1. " in capsys.readouterr().out


def test_cli_errors_are_clean(tmp_path, capsys):
    assert main(["search", str(tmp_path / "none"), "q"]) == 1
    assert "does not exist. Build it first" in capsys.readouterr().err
    bad = _write(tmp_path, "bad.jsonl", '{"instruction": "a"}\nnot json\n')
    assert main(["index", str(bad), "-o", str(tmp_path / "o")]) == 1
    assert "line 2: malformed JSON" in capsys.readouterr().err
    good = _write(tmp_path, "good.jsonl", '{"instruction": "a"}\n')
    assert main(["index", str(good), "-o", str(tmp_path / "o"), "--model", "not-a-model"]) == 1
    err = capsys.readouterr().err
    assert "Unknown model spec 'not-a-model'" in err and "minilm" in err
    assert main(["index", str(good), "-o", str(tmp_path / "o"), "--prompt", "{oops} {instruction}"]) == 1
    assert "unknown placeholder" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "pie_retriever.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("index", "search", "demo", "label", "train", "eval", "bench"):
        assert cmd in out.stdout
