"""Pools in the formats people have (issue 29 item 5): chat JSONL, CSV, Parquet, a field mapping, clear errors."""

from __future__ import annotations

import json

import pytest

from pie_retriever import PIERetriever
from pie_retriever.cli import main
from pie_retriever.errors import PoolFormatError
from pie_retriever.pool.formats import FieldMap
from pie_retriever.pool.pools import load_pool

CHAT = [
    {"messages": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "Summarise this text.\n\nThe ocean covers most of the planet."},
                  {"role": "assistant", "content": "Oceans are big."}], "id": "c1"},
    {"messages": [{"role": "user", "content": "Write a haiku about cats."},
                  {"role": "assistant", "content": "Soft paws"},
                  {"role": "user", "content": "Now one about dogs."},
                  {"role": "assistant", "content": [{"type": "text", "text": "Loyal eyes"}]}]},
]


def test_chat_jsonl(tmp_path):
    p = tmp_path / "chat.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in CHAT) + "\n", encoding="utf-8")
    a, b = load_pool(p)
    assert (a.id, a.instruction, a.input, a.output) == ("c1", "Summarise this text.", "The ocean covers most of the planet.", "Oceans are big.")
    assert a.metadata == {"system": "You are terse."}
    assert (b.instruction, b.output) == ("Now one about dogs.", "Loyal eyes")
    assert b.metadata["history"] == [{"role": "user", "content": "Write a haiku about cats."}, {"role": "assistant", "content": "Soft paws"}]
    as_list = tmp_path / "chat.json"
    as_list.write_text(json.dumps(CHAT), encoding="utf-8")
    assert [d.instruction for d in load_pool(as_list)] == [a.instruction, b.instruction]


def test_chat_without_user_names_line_and_roles(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(CHAT[0]) + "\n" + json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}) + "\n")
    with pytest.raises(PoolFormatError, match=r"bad.jsonl, line 2: the chat record has no user message \(roles seen: \['assistant'\]\)"):
        load_pool(p)


def test_csv_and_parquet(tmp_path):
    rows = [{"instruction": "Write a poem.", "input": "", "output": "Waves", "task": "write|poem", "id": "a"},
            {"instruction": "Add 2 and 3.", "input": "2, 3", "output": "5", "task": "add|number", "id": "b"}]
    csv_path = tmp_path / "pool.csv"
    csv_path.write_text("instruction,input,output,task,id\n" + "\n".join(
        ",".join(f'"{r[k]}"' for k in ("instruction", "input", "output", "task", "id")) for r in rows) + "\n", encoding="utf-8")
    demos = load_pool(csv_path, label_field="task")
    assert [(d.id, d.instruction, d.input, d.output, d.metadata["task"]) for d in demos] == [
        ("a", "Write a poem.", "", "Waves", "write|poem"), ("b", "Add 2 and 3.", "2, 3", "5", "add|number")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": r["instruction"], "completion": r["output"], "kind": r["task"]} for r in rows]),
                   tmp_path / "pool.parquet")
    fields = FieldMap(instruction="prompt", output="completion", task="kind")
    demos = load_pool(tmp_path / "pool.parquet", fields=fields)
    assert [(d.instruction, d.output, d.metadata["task"]) for d in demos] == [
        ("Write a poem.", "Waves", "write|poem"), ("Add 2 and 3.", "5", "add|number")]
    bad = tmp_path / "noinstr.csv"
    bad.write_text("prompt,answer\nWrite,x\n", encoding="utf-8")
    with pytest.raises(PoolFormatError, match=r"noinstr.csv, line 2: .*keys: \['answer', 'prompt'\].*--instruction-field"):
        load_pool(bad)


def test_field_mapping_nested_and_errors(tmp_path):
    p = tmp_path / "other.jsonl"
    p.write_text(json.dumps({"q": "Translate to French: cat", "a": "chat", "meta": {"cat": "translate|word"}}) + "\n"
                 + json.dumps({"a": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(PoolFormatError, match=r"other.jsonl, line 2: no field 'q' \(--instruction-field\) in this record; keys seen: \['a'\]"):
        load_pool(p, fields={"instruction": "q", "output": "a", "task": "meta.cat"})
    p.write_text(p.read_text().splitlines()[0] + "\n")
    (d,) = load_pool(p, fields={"instruction": "q", "output": "a", "task": "meta.cat"})
    assert (d.instruction, d.output, d.metadata["task"]) == ("Translate to French: cat", "chat", "translate|word")
    with pytest.raises(PoolFormatError, match="fields takes the keys"):
        load_pool(p, fields={"question": "q"})
    with pytest.raises(PoolFormatError, match=r"line 1: Demonstration dict has no 'instruction' key \(keys: \['a', 'meta', 'q'\]\)"):
        load_pool(p)


def test_cli_index_with_field_flags(tmp_path, capsys):
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(json.dumps({"question": q, "answer": a, "kind": t}) for q, a, t in [
        ("Write a poem about the sea.", "Waves", "write|poem"), ("Add 2 and 3.", "5", "add|number")]) + "\n", encoding="utf-8")
    assert main(["index", str(p), "-o", str(tmp_path / "idx"), "--model", "minilm", "--threads", "1",
                 "--instruction-field", "question", "--output-field", "answer", "--task-field", "kind"]) == 0
    r = PIERetriever.load(tmp_path / "idx")
    hit = r.retrieve("Compose a poem about rain.", k=1)[0]
    assert (hit.demonstration.output, hit.demonstration.metadata["task"]) == ("Waves", "write|poem")
