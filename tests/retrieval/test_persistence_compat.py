"""The saved-index format is unchanged by the layout change: folders saved by main before it still load.

The fixtures under tests/fixtures/index_v1_* were written by commit 1d29e1a (before the restructure) with
HashingEncoder(dim=16) over the conftest SMALL_POOL, plus one added and one deleted demonstration.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pie_retriever import PIERetriever

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# What main returned for retrieve("Write a poem about taxes", k=3) right after saving.
EXPECTED = [("p1", 0.730297), ("demo-6", 0.547723), ("p2", 0.507093)]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "numpy"])
def test_index_saved_before_the_restructure_loads(kind, tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(FIXTURES / f"index_v1_{kind}", folder)
    r = PIERetriever.load(folder)
    assert len(r) == 6 and "s2" not in r and r.get("demo-6").instruction == "Write a limerick about a cat."
    hits = r.retrieve("Write a poem about taxes", k=3)
    assert [(h.id, round(h.score, 6)) for h in hits] == EXPECTED
    # and it keeps working: add with a fresh id, save again, load again
    assert r.add(["Compose a sonnet about rain."]) == ["demo-7"]
    r.save(folder)
    again = PIERetriever.load(folder)
    assert len(again) == 7 and again.retrieve("Compose a sonnet", k=1)[0].id == "demo-7"
