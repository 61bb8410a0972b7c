"""The labelling bar is a `tqdm(disable=None)` closed by a `with` (issue 29 item 10)."""

from __future__ import annotations

from tqdm import tqdm

from pie_retriever.labeling import label_instructions

TEXTS = ["Write a poem about the sea.", "Summarize this article.", "Translate the sentence into French."]


def test_bar_is_closed_after_labelling(capsys):
    before = len(tqdm._instances)
    labels = label_instructions(TEXTS, show_progress=True)
    assert len(labels) == 3 and labels[0] == "write|poem"
    assert len(tqdm._instances) == before  # the old iter(tqdm(...)) inside zip() left the bar open
    assert "labelling: 100%" in capsys.readouterr().err


def test_no_bar_when_off_or_small():
    before = len(tqdm._instances)
    label_instructions(TEXTS, show_progress=False)
    label_instructions(TEXTS)
    assert len(tqdm._instances) == before
