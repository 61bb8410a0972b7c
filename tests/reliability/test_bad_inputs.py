"""Bad inputs across the API and the CLI: each is a clear error (or correct behaviour), and the pool is unchanged.

After every API error the retriever must have the same length, return the same hits, and survive a
save/load round trip with the same hits. CLI errors must be one line on stderr with exit code 1 and no
traceback.
"""

from __future__ import annotations

import copy
import datetime
import math
from pathlib import Path

import numpy as np
import pytest

from pie_retriever import Demonstration, PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import (
    ConfigError,
    DuplicateIdError,
    EmptyPoolError,
    EncoderMismatchError,
    IndexLoadError,
    InvalidDemonstrationError,
)

SMALL_POOL = [
    {"id": "p1", "instruction": "Write a poem about the ocean.", "output": "Waves...", "metadata": {"task": "write|poem", "topic": "ocean"}},
    {"id": "p2", "instruction": "Compose a haiku about taxes.", "output": "Forms...", "metadata": {"task": "write|poem", "topic": "taxes"}},
    {"id": "s1", "instruction": "Summarize this article about the ocean.", "input": "The ocean covers...", "output": "Oceans are big.",
     "metadata": {"task": "summarize|article", "topic": "ocean"}},
    {"id": "t1", "instruction": "Translate this sentence about the ocean into French.", "input": "The ocean is blue.",
     "output": "L'océan est bleu.", "metadata": {"task": "translate|sentence", "topic": "ocean"}},
]


class BrokenEncoder(HashingEncoder):
    """A custom encoder that misbehaves in the way named by ``mode``."""

    def __init__(self, mode: str) -> None:
        super().__init__(dim=32)
        self.mode = mode

    def encode(self, texts, *, prompt=None, show_progress=None):
        out = super().encode(texts, prompt=prompt)
        if self.mode == "nan":
            out[-1, 0] = np.nan
        elif self.mode == "inf":
            out[0, 1] = np.inf
        elif self.mode == "dim":
            out = out[:, :16]
        elif self.mode == "rows":
            out = out[:-1]
        elif self.mode == "raise":
            raise RuntimeError("the model server went away")
        return out


def _pool(encoder=None, **kw) -> PIERetriever:
    return PIERetriever.from_demonstrations(copy.deepcopy(SMALL_POOL), encoder or HashingEncoder(dim=32), **kw)


def _state(r: PIERetriever) -> tuple:
    hits = r.retrieve("Write a poem about taxes", k=3)
    return len(r), [(h.id, round(h.score, 5)) for h in hits]


def _broken(mode):
    def call(r):
        r.encoder.mode = mode
        try:
            r.add([{"instruction": "write a limerick"}, {"instruction": "sort these numbers"}])
        finally:
            r.encoder.mode = "ok"
    return call


def _bad_in_batch(r):
    r.add([{"instruction": "good one", "id": "g1"}, {"instruction": "good two", "id": "g2"}, {"instruction": ""}])


def _embed_input_only_without_input():
    r2 = PIERetriever(HashingEncoder(dim=32), embed_fields=("input",))
    r2.add([{"instruction": "x", "input": "has input"}])
    r2.add([{"instruction": "y"}])


# (id, call, expected exception, message regex)
API_CASES = [
    ("add-none", lambda r: r.add(None), TypeError, "add\\(\\) takes demonstrations"),
    ("add-int", lambda r: r.add(5), TypeError, "add\\(\\) takes demonstrations"),
    ("add-item-int", lambda r: r.add([123]), InvalidDemonstrationError, "Demonstration #0"),
    ("add-no-instruction", lambda r: r.add([{"input": "x"}]), InvalidDemonstrationError, "no 'instruction' key"),
    ("add-empty-instruction", lambda r: r.add([{"instruction": ""}]), InvalidDemonstrationError, "empty"),
    ("add-blank-instruction", lambda r: r.add(["   "]), InvalidDemonstrationError, "empty"),
    ("add-instruction-int", lambda r: r.add([{"instruction": 5}]), InvalidDemonstrationError, "must be a string"),
    ("add-instruction-none", lambda r: r.add([{"instruction": None}]), InvalidDemonstrationError, "must be a string"),
    ("add-duplicate-with-pool", lambda r: r.add([{"instruction": "new", "id": "p1"}]), DuplicateIdError, "'p1'"),
    ("add-duplicate-in-batch", lambda r: r.add([{"instruction": "a b", "id": "z"}, {"instruction": "c d", "id": "z"}]), DuplicateIdError, "within the batch"),
    ("add-id-empty", lambda r: r.add([{"instruction": "ok", "id": ""}]), InvalidDemonstrationError, "id must be a non-empty string"),
    ("add-id-float", lambda r: r.add([{"instruction": "ok", "id": 3.5}]), InvalidDemonstrationError, "id must be a non-empty string"),
    ("add-id-list", lambda r: r.add([{"instruction": "ok", "id": ["a"]}]), InvalidDemonstrationError, "id must be a non-empty string"),
    ("add-metadata-set", lambda r: r.add([{"instruction": "ok", "metadata": {"tags": {"a", "b"}}}]), InvalidDemonstrationError, "metadata cannot be saved as JSON"),
    ("add-metadata-datetime", lambda r: r.add([{"instruction": "ok", "metadata": {"when": datetime.datetime(2024, 1, 1)}}]), InvalidDemonstrationError, "metadata cannot be saved as JSON"),
    ("add-metadata-int-key", lambda r: r.add([Demonstration("ok", metadata={1: "a"})]), InvalidDemonstrationError, "metadata keys must be strings"),
    ("add-metadata-not-dict", lambda r: r.add([{"instruction": "ok", "metadata": "x"}]), (InvalidDemonstrationError, ValueError), "metadata"),
    ("add-metadata-object", lambda r: r.add([{"instruction": "ok", "metadata": {"o": object()}}]), InvalidDemonstrationError, "metadata cannot be saved as JSON"),
    ("add-lone-surrogate", lambda r: r.add(["bad \ud800 text"]), InvalidDemonstrationError, "not valid Unicode"),
    ("add-lone-surrogate-output", lambda r: r.add([{"instruction": "ok", "output": "x\udfff"}]), InvalidDemonstrationError, "output is not valid Unicode"),
    ("add-lone-surrogate-metadata", lambda r: r.add([{"instruction": "ok", "metadata": {"k": "\ud800"}}]), InvalidDemonstrationError, "metadata cannot be saved"),
    ("add-output-int", lambda r: r.add([{"instruction": "ok", "output": 7}]), InvalidDemonstrationError, "output must be a string"),
    ("add-input-list", lambda r: r.add([{"instruction": "ok", "input": ["a"]}]), InvalidDemonstrationError, "input must be a string"),
    ("add-bad-item-in-batch", _bad_in_batch, InvalidDemonstrationError, "Demonstration #2"),
    ("encoder-nan", _broken("nan"), EncoderMismatchError, "NaN or infinite.*nothing was added"),
    ("encoder-inf", _broken("inf"), EncoderMismatchError, "NaN or infinite"),
    ("encoder-wrong-dim", _broken("dim"), EncoderMismatchError, "shape \\(2, 16\\)"),
    ("encoder-wrong-rows", _broken("rows"), EncoderMismatchError, "shape \\(1, 32\\)"),
    ("encoder-raises", _broken("raise"), RuntimeError, "went away"),
    ("delete-unknown", lambda r: r.delete(["nope"]), KeyError, "nothing was deleted"),
    ("delete-partly-unknown", lambda r: r.delete(["p1", "nope"]), KeyError, "nothing was deleted"),
    ("delete-int", lambda r: r.delete([1]), TypeError, "takes demonstration ids"),
    ("delete-none", lambda r: r.delete(None), TypeError, "takes an id or a list of ids"),
    ("retrieve-empty", lambda r: r.retrieve(""), ValueError, "query is empty"),
    ("retrieve-blank", lambda r: r.retrieve("   "), ValueError, "query is empty"),
    ("retrieve-none", lambda r: r.retrieve(None), TypeError, "query must be a string"),
    ("retrieve-int", lambda r: r.retrieve(5), TypeError, "query must be a string"),
    ("retrieve-bytes", lambda r: r.retrieve(b"poem"), TypeError, "query must be a string"),
    ("k-zero", lambda r: r.retrieve("q", k=0), ConfigError, "k must be a positive integer"),
    ("k-negative", lambda r: r.retrieve("q", k=-1), ConfigError, "k must be a positive integer"),
    ("k-float", lambda r: r.retrieve("q", k=1.5), ConfigError, "k must be a positive integer"),
    ("k-bool", lambda r: r.retrieve("q", k=True), ConfigError, "k must be a positive integer"),
    ("k-string", lambda r: r.retrieve("q", k="3"), ConfigError, "k must be a positive integer"),
    ("min-score-nan", lambda r: r.retrieve("q", min_score=math.nan), ConfigError, "min_score must be a number"),
    ("min-score-string", lambda r: r.retrieve("q", min_score="0.5"), ConfigError, "min_score must be a number"),
    ("mmr-lambda-2", lambda r: r.retrieve("q", mmr=True, mmr_lambda=2), ConfigError, "mmr_lambda must be a number in \\[0, 1\\]"),
    ("mmr-lambda-nan", lambda r: r.retrieve("q", mmr=True, mmr_lambda=math.nan), ConfigError, "mmr_lambda"),
    ("fetch-k-negative", lambda r: r.retrieve("q", mmr=True, fetch_k=-5), ConfigError, "fetch_k must be a positive integer"),
    ("fetch-k-zero", lambda r: r.retrieve("q", mmr=True, fetch_k=0), ConfigError, "fetch_k must be a positive integer"),
    ("filter-empty-dict", lambda r: r.retrieve("q", filter={}), ConfigError, "filter must be a non-empty dict"),
    ("filter-dict-value", lambda r: r.retrieve("q", filter={"task": {"a": 1}}), ConfigError, "the value for 'task' is a dict"),
    ("filter-empty-list", lambda r: r.retrieve("q", filter={"task": []}), ConfigError, "is empty, so nothing could match"),
    ("filter-unknown-key", lambda r: r.retrieve("q", filter={"nokey": "x"}), KeyError, "Unknown metadata filter key"),
    ("filter-string", lambda r: r.retrieve("q", filter="task"), ConfigError, "filter must be"),
    ("filter-int-key", lambda r: r.retrieve("q", filter={1: "x"}), ConfigError, "keys must be non-empty strings"),
    ("filter-nan-value", lambda r: r.retrieve("q", filter={"task": math.nan}), ConfigError, "NaN"),
    ("filter-list-of-pairs", lambda r: r.retrieve("q", filter=[("task", "x")]), ConfigError, "filter must be"),
    ("batch-single-string", lambda r: r.retrieve_batch("poem"), TypeError, "takes a list of queries"),
    ("batch-with-empty", lambda r: r.retrieve_batch(["ok", ""]), ValueError, "query is empty"),
    ("batch-with-none", lambda r: r.retrieve_batch([None]), TypeError, "query must be a string"),
    ("save-onto-file", lambda r: r.save(_file(r)), IndexLoadError, "is not a folder"),
    ("save-under-file", lambda r: r.save(_file(r) / "x"), (IndexLoadError, OSError), "."),
    ("save-foreign-folder", lambda r: r.save(_foreign(r)), IndexLoadError, "not a pie_retriever index"),
    ("save-project-with-manifest", lambda r: r.save(_project(r)), IndexLoadError, "not a pie_retriever index"),
    ("load-missing", lambda r: PIERetriever.load(_tmp(r) / "missing"), IndexLoadError, "does not exist"),
    ("get-unknown", lambda r: r.get("nope"), KeyError, "No demonstration with id"),
]

CONSTRUCTION_CASES = [
    ("index-kind-unknown", lambda: PIERetriever(HashingEncoder(dim=8), index="ivf"), ConfigError, "Unknown index kind 'ivf'"),
    ("hnsw-option-type", lambda: PIERetriever(HashingEncoder(dim=8), index="hnsw", index_options={"hnsw_m": "x"}), ConfigError, "hnsw_m='x' is invalid"),
    ("hnsw-option-unknown", lambda: PIERetriever(HashingEncoder(dim=8), index="hnsw", index_options={"m": 8}), ConfigError, "unknown index option"),
    ("flat-option", lambda: PIERetriever(HashingEncoder(dim=8), index="flat", index_options={"hnsw_m": 8}), ConfigError, "takes no options"),
    ("embed-fields-unknown", lambda: PIERetriever(HashingEncoder(dim=8), embed_fields=("evil",)), ConfigError, "embed_fields"),
    ("embed-fields-empty", lambda: PIERetriever(HashingEncoder(dim=8), embed_fields=()), ConfigError, "embed_fields"),
    ("empty-pool", lambda: PIERetriever.from_demonstrations([], HashingEncoder(dim=8)), EmptyPoolError, "empty pool"),
    ("hashing-dim", lambda: HashingEncoder(dim=1), ValueError, "dim must be an int >= 2"),
    ("empty-retriever", lambda: PIERetriever(HashingEncoder(dim=8)).retrieve("q"), EmptyPoolError, "empty"),
    ("no-text-in-embedded-fields", _embed_input_only_without_input, InvalidDemonstrationError, "no text in the embedded fields"),
]

_TMP: dict[int, Path] = {}


def _tmp(r) -> Path:
    return _TMP[id(r)]


def _file(r) -> Path:
    p = _tmp(r) / "a-file"
    p.write_text("not a folder")
    return p


def _foreign(r) -> Path:
    p = _tmp(r) / "docs"
    p.mkdir(exist_ok=True)
    (p / "important.txt").write_text("keep me")
    return p


def _project(r) -> Path:
    p = _tmp(r) / "proj"
    (p / "src").mkdir(parents=True, exist_ok=True)
    (p / "src" / "main.py").write_text("print('keep me')")
    (p / "manifest.json").write_text('{"name": "x"}')
    return p


def test_at_least_60_kinds_in_all():
    assert len(API_CASES) + len(CONSTRUCTION_CASES) + len(CLI_CASES) >= 60


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_leaves_pool_unchanged(tmp_path, case):
    name, call, error, pattern = case
    r = _pool(BrokenEncoder("ok"))
    _TMP[id(r)] = tmp_path
    before = _state(r)
    with pytest.raises(error, match=pattern):
        call(r)
    assert _state(r) == before, f"{name}: the pool changed"
    r.save(tmp_path / "roundtrip")
    assert _state(PIERetriever.load(tmp_path / "roundtrip", encoder=r.encoder)) == before
    for p in (tmp_path / "docs" / "important.txt", tmp_path / "proj" / "src" / "main.py"):
        assert not p.parent.exists() or p.exists(), f"{name}: a user file was deleted"


@pytest.mark.parametrize("case", CONSTRUCTION_CASES, ids=[c[0] for c in CONSTRUCTION_CASES])
def test_construction_bad_input(case):
    _, call, error, pattern = case
    with pytest.raises(error, match=pattern):
        call()


def test_correct_behaviour_cases(tmp_path):
    r = _pool()
    assert r.delete(["p1", "p1"]) == 1 and "p1" not in r and len(r) == 3  # a repeated id is removed once
    assert r.retrieve("q", k=50)  # k above the pool: all of them, with one warning
    assert r.retrieve("poem", min_score=2.0) == []  # nothing is that similar
    caller = Demonstration("Compose a ballad about the sea.")
    r.add([caller])
    assert caller.id is None  # the caller's object is not modified by add()


# -- CLI ---------------------------------------------------------------------------------------------
def _cli(argv, capsys):
    from pie_retriever.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "idx"
    _pool().save(path)
    return path


CLI_CASES = [
    ("index-missing-pool", lambda t, s: ["index", str(t / "nope.jsonl"), "-o", str(t / "out")], "does not exist"),
    ("index-onto-file", lambda t, s: ["index", str(_write(t, "p.jsonl")), "-o", str(_write(t, "f.txt", "x"))], "is not a folder"),
    ("index-under-file", lambda t, s: ["index", str(_write(t, "p.jsonl")), "-o", str(_write(t, "f.txt", "x") / "x")], "is a file, not a folder"),
    ("index-foreign-folder", lambda t, s: ["index", str(_write(t, "p.jsonl")), "-o", str(_foreign_dir(t))], "not a pie_retriever index"),
    ("index-bad-jsonl", lambda t, s: ["index", str(_write(t, "bad.jsonl", '{"instruction": "a"}\n{oops\n')), "-o", str(t / "out")], "line 2"),
    ("index-unwritable", lambda t, s: ["index", str(_write(t, "p.jsonl")), "-o", "/proc/pie-test/idx"], "Cannot save to|not writable|No such file|Permission|Operation"),
    ("search-missing-index", lambda t, s: ["search", str(t / "nope"), "poem"], "does not exist"),
    ("search-foreign-folder", lambda t, s: ["search", str(_foreign_dir(t)), "poem"], "has no manifest.json"),
    ("search-filter-no-equals", lambda t, s: ["search", str(s), "poem", "--filter", "task"], "--filter expects KEY=VALUE"),
    ("search-filter-unknown-key", lambda t, s: ["search", str(s), "poem", "--filter", "nokey=x"], "Unknown metadata filter key"),
    ("search-k-zero", lambda t, s: ["search", str(s), "poem", "-k", "0"], "k must be a positive integer"),
    ("search-empty-query", lambda t, s: ["search", str(s), "  "], "query is empty"),
]


def _write(t: Path, name: str, text: str | None = None) -> Path:
    p = t / name
    p.write_text(text if text is not None else '{"instruction": "Write a poem."}\n')
    return p


def _foreign_dir(t: Path) -> Path:
    p = t / "docs"
    p.mkdir(exist_ok=True)
    (p / "keep.txt").write_text("keep")
    return p


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line(tmp_path, saved, capsys, case):
    _, argv, pattern = case
    code, err = _cli(argv(tmp_path, saved), capsys)
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    import re

    assert re.search(pattern, err), err
    assert (tmp_path / "docs" / "keep.txt").exists() or not (tmp_path / "docs").exists()
