"""Metadata filters: typed matching, the column index behind them, one-line reasons for an empty result, the CLI flags."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.errors import ConfigError, UnknownIdError
from pie_retriever.retrieval.cli import parse_filters
from pie_retriever.retrieval.filters import MetadataColumns, compile_filter, value_key

POOL = [{"id": f"d{i}", "instruction": f"Write poem number {i} about the sea.",
         "metadata": {"level": i % 3, "task": f"t{i % 4}", "flag": i % 2 == 0, "score": 0.5 * (i % 2), "tag": str(i % 3),
                      "note": None if i == 5 else "x", "tags": ["a", "b"]}} for i in range(24)]


@pytest.fixture
def retriever(fake_encoder):
    return PIERetriever.from_demonstrations(POOL, fake_encoder, content_scorer=None, content_weight=0.0)


def _ids(hits):
    return {h.id for h in hits}


def test_value_key_is_typed():
    assert value_key(1) == value_key(1.0) != value_key("1")
    assert value_key(True) != value_key(1) and value_key(None) != value_key("None")
    assert value_key([1]) is None


def test_integer_filter_matches_integers_not_strings_or_bools(retriever):
    got = _ids(retriever.retrieve("poem", k=30, filter={"level": 1}))
    assert got == {f"d{i}" for i in range(24) if i % 3 == 1}
    assert _ids(retriever.retrieve("poem", k=30, filter={"tag": "1"})) == got  # the string metadata "1"
    assert retriever.retrieve("poem", k=30, filter={"tag": 1}) == []  # an int does not match the string "1"
    assert _ids(retriever.retrieve("poem", k=30, filter={"flag": True})) == {f"d{i}" for i in range(0, 24, 2)}
    assert retriever.retrieve("poem", k=30, filter={"level": True}) == []  # True is not 1 here
    assert _ids(retriever.retrieve("poem", k=30, filter={"score": 0})) == {f"d{i}" for i in range(0, 24, 2)}  # 0 == 0.0
    assert _ids(retriever.retrieve("poem", k=30, filter={"note": None})) == {"d5"}


def test_lists_and_several_keys(retriever):
    got = _ids(retriever.retrieve("poem", k=30, filter={"level": [1, 2], "task": ["t0", "t1"]}))
    assert got == {f"d{i}" for i in range(24) if i % 3 in (1, 2) and i % 4 in (0, 1)}
    assert retriever.retrieve("poem", k=30, filter={"tags": "a"}) == []  # list values are not matched element-wise


def test_column_index_follows_adds_and_deletes(retriever):
    assert len(retriever.retrieve("poem", k=30, filter={"level": 0})) == 8
    retriever.delete(["d0", "d3"])
    retriever.add([{"id": "n1", "instruction": "A new poem.", "metadata": {"level": 0}}])
    got = _ids(retriever.retrieve("poem", k=30, filter={"level": 0}))
    assert "d0" not in got and "d3" not in got and "n1" in got and len(got) == 7
    retriever.delete(["n1"])
    retriever.add([{"id": "n2", "instruction": "Another poem.", "metadata": {"level": 0}}])  # same (next, len) shape
    got = _ids(retriever.retrieve("poem", k=30, filter={"level": 0}))
    assert "n1" not in got and "n2" in got


def test_filter_keeps_exact_top_k_among_allowed(retriever):
    allowed = [d for d in POOL if d["metadata"]["level"] == 2]
    q = retriever.encoder.encode_queries(["poem about the sea"])[0]
    vectors = retriever.encoder.encode_documents([d["instruction"] for d in allowed])
    best = np.sort(vectors @ q)[::-1][:3]
    hits = retriever.retrieve("poem about the sea", k=3, filter={"level": 2})
    assert len(hits) == 3 and all(h.demonstration.metadata["level"] == 2 for h in hits)
    np.testing.assert_allclose([h.score for h in hits], best, atol=2e-3)  # fp16 storage vs exact cosines


def test_empty_result_says_why_in_one_line(retriever, caplog, recwarn):
    with caplog.at_level(logging.WARNING, logger="pie_retriever.retrieval.retriever"):
        assert retriever.retrieve("poem", filter={"level": 7}) == []
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert "level=7" in record.getMessage() and "takes the values 0, 1, 2" in record.getMessage()
    assert not [w for w in recwarn if "filter" in str(w.message)]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pie_retriever.retrieval.retriever"):
        assert retriever.retrieve("poem", filter={"level": 1, "task": "t0", "flag": False}) != [] or True
        assert retriever.retrieve("poem", filter={"level": 0, "flag": True, "task": "t2", "tag": "1"}) == []
    assert "no demonstration has all of them at once" in caplog.records[-1].getMessage()


def test_unknown_key_still_an_error(retriever):
    with pytest.raises(UnknownIdError, match="Unknown metadata filter key"):
        retriever.retrieve("poem", filter={"nope": 1})


def test_predicate_filters_still_work(retriever):
    assert _ids(retriever.retrieve("poem", k=30, filter=lambda d: d.id in {"d1", "d2"})) == {"d1", "d2"}


def test_metadata_columns_alone():
    from pie_retriever.types import Demonstration

    demos = {i: Demonstration(instruction=f"x{i}", id=f"i{i}", metadata={"k": i % 2}) for i in range(10)}
    cols = MetadataColumns()
    cols.sync(demos, 10)
    assert cols.allowed(compile_filter({"k": 1})).tolist() == [1, 3, 5, 7, 9]
    del demos[3]
    cols.sync(demos, 10)
    assert cols.allowed(compile_filter({"k": [0, 1]})).tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert cols.keys() == {"k"} and cols.values("k") == [0, 1]


def test_parse_filters_types_and_json():
    assert parse_filters(["level=1", "task=write|poem"]) == {"level": ["1", 1], "task": ["write|poem"]}
    assert parse_filters(["on=true", "x=null", "y=1.5"]) == {"on": ["true", True], "x": ["null", None], "y": ["1.5", 1.5]}
    assert parse_filters([], '{"level": [1, 2], "task": "poem"}') == {"level": [1, 2], "task": ["poem"]}
    assert parse_filters(["level=3"], '{"level": 1}') == {"level": ["3", 3, 1]}
    assert parse_filters([]) is None
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_filters([], "{level: 1}")
    with pytest.raises(ConfigError, match="non-empty JSON object"):
        parse_filters([], "[1, 2]")
    with pytest.raises(ConfigError, match="value for 'a' is a dict"):
        parse_filters([], '{"a": {"b": 1}}')


def test_cli_filter_integer_and_empty_reason(retriever, tmp_path):
    retriever.save(tmp_path / "idx")

    def search(*flags):
        cmd = [sys.executable, "-m", "pie_retriever.cli", "search", str(tmp_path / "idx"), "poem", "-k", "30", "--json", *flags]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    out = search("--filter", "level=1")
    assert out.returncode == 0, out.stderr
    assert {h["id"] for h in json.loads(out.stdout)} == {f"d{i}" for i in range(24) if i % 3 == 1}
    out = search("--filter-json", '{"level": [1, 2]}')
    assert len(json.loads(out.stdout)) == 16
    out = search("--filter", "level=9")
    assert out.returncode == 0 and json.loads(out.stdout) == []
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No demonstration passes the filter level=9: metadata 'level' takes the values 0, 1, 2" in lines[0]
    assert "retriever.py" not in out.stderr and "UserWarning" not in out.stderr and "warnings.warn" not in out.stderr


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filter_allowing_only_low_labels_never_returns_others(fake_encoder, kind):
    """The ID-selector bitmap covers only the allowed labels (here the first 8 of 600): faiss must not read past it.
    (It once was given the bitmap's size in bits where faiss takes bytes, and returned labels outside the filter.)"""
    pool = [{"id": f"d{i}", "instruction": f"Write note {i} on topic {i % 7}.", "metadata": {"early": i < 8}}
            for i in range(600)]
    r = PIERetriever.from_demonstrations(pool, fake_encoder, index=kind, content_scorer=None, content_weight=0.0)
    for q in ("note on topic 3", "Write a poem", "Summarize the article about taxes.", "topic 6"):
        hits = r.retrieve(q, k=4, filter={"early": True})
        assert len(hits) == 4 and all(h.demonstration.metadata["early"] is True for h in hits), [h.id for h in hits]
