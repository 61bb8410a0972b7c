"""The CLI never destroys its inputs (issue 25, item 5) and reads query files as written (item 7), real MiniLM index.

Every command that writes a file refuses an output that is one of its inputs, a file inside an index folder, and an
existing file without ``--force``; each refusal happens before any model loads (``PIERetriever.load`` and the
encoder factory are replaced by a function that fails, so a refusal that came late would show as that failure).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pie_retriever.cli import main

POOL = [
    {"id": "p1", "instruction": "Write a poem about the ocean.", "metadata": {"task": "write|poem", "level": 1}},
    {"id": "p2", "instruction": "Compose a haiku about taxes.", "metadata": {"task": "write|poem", "level": 2}},
    {"id": "s1", "instruction": "Summarize this article about the ocean.", "input": "The ocean covers...",
     "metadata": {"task": "summarize|article", "level": 1}},
    {"id": "s2", "instruction": "Summarize the text about tax law.", "metadata": {"task": "summarize|article", "level": 2}},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    pool = root / "pool.jsonl"
    pool.write_text("".join(json.dumps(d) + "\n" for d in POOL), encoding="utf-8")
    assert main(["index", str(pool), "-o", str(root / "idx"), "--model", "minilm", "--threads", "1"]) == 0
    return root


@pytest.fixture
def work(built, tmp_path):
    shutil.copytree(built / "idx", tmp_path / "idx")
    shutil.copy(built / "pool.jsonl", tmp_path / "pool.jsonl")
    return tmp_path


@pytest.fixture
def no_model(monkeypatch):
    """Loading an index or a model fails loudly: a check that should come first cannot hide behind it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    from pie_retriever.downstream import embed
    from pie_retriever.retrieval.retriever import PIERetriever

    monkeypatch.setattr(PIERetriever, "load", classmethod(lambda cls, *a, **k: refuse()))
    monkeypatch.setattr(embed, "load_items", refuse)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _fails(argv: list[str], capsys, *words: str) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_search_output_inside_the_index_is_refused_and_the_index_stays(work, capsys, no_model):
    queries = work / "q.txt"
    queries.write_text("Write a poem\n", encoding="utf-8")
    before = _digests(work / "idx")
    _fails(["search", str(work / "idx"), "--queries", str(queries), "-o", str(work / "idx" / "manifest.json")],
           capsys, "input", str(work / "idx"))
    _fails(["search", str(work / "idx"), "--queries", str(queries), "-o", str(work / "idx" / "new.jsonl")],
           capsys, "inside")
    _fails(["search", str(work / "idx"), "--queries", str(queries), "-o", str(queries)], capsys, "is the input")
    assert _digests(work / "idx") == before and queries.read_text(encoding="utf-8") == "Write a poem\n"


def test_search_output_that_exists_needs_force(work, capsys):
    queries, out = work / "q.txt", work / "picks.jsonl"
    queries.write_text("Write a poem\n", encoding="utf-8")
    out.write_text("keep me\n", encoding="utf-8")
    _fails(["search", str(work / "idx"), "--queries", str(queries), "-o", str(out)], capsys, "already exists", "--force")
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert main(["search", str(work / "idx"), "--queries", str(queries), "-o", str(out), "--force", "-k", "1"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["query"] == "Write a poem"


@pytest.mark.parametrize("command", ["select", "compress"])
def test_select_and_compress_refuse_their_input_and_the_index(work, capsys, no_model, command):
    size = ["--budget", "2"] if command == "select" else ["--ratio", "0.5"]
    pool_bytes = (work / "pool.jsonl").read_bytes()
    _fails([command, str(work / "pool.jsonl"), *size, "-o", str(work / "pool.jsonl")], capsys, "is the input")
    _fails([command, str(work / "idx"), *size, "-o", str(work / "idx" / "demonstrations.jsonl")], capsys, "input")
    (work / "old.jsonl").write_text("x\n", encoding="utf-8")
    _fails([command, str(work / "pool.jsonl"), *size, "-o", str(work / "old.jsonl")], capsys, "already exists")
    assert (work / "pool.jsonl").read_bytes() == pool_bytes and (work / "old.jsonl").read_text() == "x\n"


def test_select_report_without_labels_is_refused_before_the_model_loads(work, capsys, no_model):
    """`select --report F --labels none` used to exit 0 and write no report (the report measures task coverage)."""
    _fails(["select", str(work / "pool.jsonl"), "--budget", "2", "-o", str(work / "s.jsonl"), "--report",
            str(work / "s.json"), "--labels", "none"], capsys, "needs task labels")
    assert not (work / "s.json").exists() and not (work / "s.jsonl").exists()


def test_map_html_and_tasks_and_compare_refuse_existing_outputs(work, capsys, no_model):
    (work / "map.html").write_text("<p>old</p>", encoding="utf-8")
    _fails(["map", str(work / "pool.jsonl"), "-o", str(work / "map.png"), "--html"], capsys, "map.html", "already exists")
    assert (work / "map.html").read_text(encoding="utf-8") == "<p>old</p>"
    (work / "tasks.json").write_text("{}", encoding="utf-8")
    _fails(["tasks", str(work / "pool.jsonl"), "-o", str(work / "tasks.json")], capsys, "already exists")
    _fails(["compare", str(work / "pool.jsonl"), str(work / "idx"), "-o", str(work / "idx" / "corr.png")], capsys, "input")


def test_label_refuses_its_input(work, capsys):
    before = (work / "pool.jsonl").read_bytes()
    assert main(["label", str(work / "pool.jsonl"), "-o", str(work / "pool.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pie-retriever label: error:") and "is the input" in err
    assert (work / "pool.jsonl").read_bytes() == before


def test_label_errors_have_the_prefix_and_name_the_file_once(tmp_path, capsys):
    assert main(["label", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pie-retriever label: error:") and "nope.jsonl" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"\n', encoding="utf-8")
    assert main(["label", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pie-retriever label: error:") and err.count("bad.jsonl") == 1, err


def test_eval_ieb_refuses_an_existing_result_before_any_model(tmp_path, capsys, ieb, no_model):
    result = tmp_path / "ieb_eval.json"
    result.write_text('{"results": []}', encoding="utf-8")
    _fails(["eval", "ieb", "--data", str(ieb), "-o", str(result)], capsys, "already exists", "--force")
    assert result.read_text(encoding="utf-8") == '{"results": []}'


def test_eval_ieb_default_output_is_not_the_shipped_result():
    from pie_retriever.cli import build_parser

    args = build_parser().parse_args(["eval", "ieb"])
    assert not Path(args.output).parts[:1] == ("results",)


def test_bench_refuses_an_existing_result_before_it_runs(tmp_path, capsys):
    (tmp_path / "bench-quick.json").write_text("{}", encoding="utf-8")
    _fails(["bench", "--quick", "--out-dir", str(tmp_path), "--sections", "quality"], capsys, "already exists", "--force")
    assert (tmp_path / "bench-quick.json").read_text(encoding="utf-8") == "{}"


def test_eval_ieb_check_says_which_files_are_missing(tmp_path, capsys, ieb):
    assert main(["eval", "ieb", "--check", str(ieb)]) == 0
    assert "complete IEB folder" in capsys.readouterr().err
    shutil.copy(ieb / "eft_test.json", tmp_path / "eft_test.json")
    (tmp_path / "ift_test.json").write_text("[1, 2]", encoding="utf-8")
    assert main(["eval", "ieb", "--check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "ok  " + str(tmp_path / "eft_test.json") in captured.out
    assert "intention_similarity_test.json: missing" in captured.out and "expected a JSON object" in captured.out
    assert "github.com/Yiwei98/instruction-embedding-benchmark" in captured.err


# -- query files (issue 25, item 7) and search --queries output (issue 29, item 7) -------------------------------
def test_query_file_bom_form_feed_nel_and_line_separator(work, capsys):
    from pie_retriever.retrieval.cli import read_queries

    path = work / "q.txt"
    path.write_bytes("\ufeffWrite a poem\nsplit\x0cnot\u0085here\u2028either\r\nSummarize\n".encode())
    assert read_queries(str(path)) == ["Write a poem", "split\x0cnot\u0085here\u2028either", "Summarize"]


def test_query_file_codec_error_names_file_and_line(work, capsys, no_model):
    path = work / "q.txt"
    path.write_bytes(b"Write a poem\nR\xe9sum\xe9 this\n")
    err = _fails(["search", str(work / "idx"), "--queries", str(path)], capsys, "q.txt, line 2", "UTF-8")
    assert "column 2" in err


def test_search_queries_keeps_every_input_field(work, capsys):
    out = work / "hits.jsonl"
    assert main(["search", str(work / "idx"), "--queries", str(work / "pool.jsonl"), "-o", str(out), "-k", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["p1", "p2", "s1", "s2"]
    assert rows[2]["input"] == "The ocean covers..." and rows[2]["metadata"]["task"] == "summarize|article"
    assert rows[0]["query"] == POOL[0]["instruction"] and rows[0]["hits"][0]["id"] == "p1"


def test_k_zero_and_unknown_filter_keys_are_reported_before_the_model_loads(work, capsys, no_model):
    _fails(["search", str(work / "idx"), "Write a poem", "-k", "0"], capsys, "-k must be a positive integer")
    _fails(["search", str(work / "idx"), "Write a poem", "--filter", "levle=1"], capsys, "levle", "level", "task")


def test_labels_cache_holding_a_list_is_a_clear_error(work, capsys):
    cache = work / "labels.json"
    cache.write_text('["write|poem"]', encoding="utf-8")
    _fails(["tasks", str(work / "idx"), "--labels-cache", str(cache)], capsys, "labels.json", "JSON list")


def test_downstream_tools_on_an_index_do_not_load_its_model(work, monkeypatch):
    from pie_retriever.downstream.embed import load_items
    from pie_retriever.encoders import transformer

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded for stored vectors")

    monkeypatch.setattr(transformer.TransformerEncoder, "__init__", refuse)
    items = load_items(str(work / "idx"))
    assert len(items) == 4 and items.vectors.shape[0] == 4 and items.encoder_name


def test_downstream_model_help_names_the_real_default(capsys):
    from pie_retriever.encoders.models import DEFAULT_MODEL

    for command in ("select", "compress", "compare", "map", "tasks"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"(default:{DEFAULT_MODEL}," in "".join(capsys.readouterr().out.split()), command  # argparse wraps at "-"


def test_tasks_reports_gold_purity_low_purity_names_and_a_small_pool(work, capsys):
    assert main(["tasks", str(work / "idx"), "--clusters", "2"]) == 0
    captured = capsys.readouterr()
    assert "gold" in captured.out.splitlines()[1]
    assert "are few for 2 clusters" in captured.err and "against the pool's own task labels (2 tasks, 4 of 4" in captured.err
    from pie_retriever.downstream.task_quality import annotate

    result = {"n": 4, "k": 2, "assign": [0, 0, 1, 1],
              "clusters": [{"cluster": 0, "name": "a|b", "purity": 0.4}, {"cluster": 1, "name": "c|d", "purity": 1.0}]}
    annotate(result, ["x", "y", "z", "z"])
    assert [c["low_purity"] for c in result["clusters"]] == [True, False]
    assert [c["gold_purity"] for c in result["clusters"]] == [0.5, 1.0] and result["gold"]["purity"] == 0.75
