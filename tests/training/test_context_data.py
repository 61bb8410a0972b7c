"""Long-context training data (own contexts, topic-swapped passage pairs with twins) and the LoRA warm start."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pie_retriever.errors import TrainingConfigError, TrainingDataError
from pie_retriever.training import TrainingArguments
from pie_retriever.training.context_data import JOINS, ContextTripletSampler, ift_contexts, with_contexts
from pie_retriever.training.data import LabelledSet


@pytest.fixture
def ctx_ieb(tmp_path):
    def sample(label, instruction, context="", output=""):
        return label, {"category": label.split("|"), "instruction": instruction,
                       "input": f"{instruction} {context}".strip() if context else instruction, "output": output}

    rows = [
        sample("classify|review", "Classify the review as positive or negative.", "The soup was cold and the waiter rude.",
               "negative"),
        sample("classify|review", "Is this review positive?", "Great pasta, friendly staff, I will come back next week."),
        sample("write|poem", "Write a poem about the sea.", "", "Waves roll in and out under a grey sky, " * 3),
        sample("write|poem", "Compose a short poem.", "Topic: the moon over a quiet lake in the mountains."),
        sample("summarize|text", "Summarize the text.", "Held out context that must never become a passage at all."),
        sample("summarize|text", "Give a summary.", "", "A long summary of a meeting where the budgets and the plans were discussed at length."),
    ]
    ift: dict = {}
    for label, s in rows:
        ift.setdefault(label, {"number": 0, "samples": []})["samples"].append(s)
    eft = {"translate|sentence": {"number": 1, "samples": [{"category": ["translate", "sentence"], "instruction": "Summarize the text."}]}}
    (tmp_path / "ift_test.json").write_text(json.dumps(ift))
    (tmp_path / "eft_test.json").write_text(json.dumps(eft))
    (tmp_path / "intention_similarity_test.json").write_text("[]")
    return tmp_path


def test_ift_contexts_skip_held_out_samples(ctx_ieb):
    own, passages = ift_contexts(ctx_ieb)
    assert [label for _, label in own] == ["classify|review", "classify|review", "write|poem"]
    assert not any("Held out" in p for p in passages)
    assert any(p.startswith("Waves roll in") for p in passages) and any("budgets" in p for p in passages)


def _small_set():
    texts = ["Classify the review as positive or negative.", "Is this review positive?", "Write a poem about the sea.",
             "Compose a short poem.", "Write a poem about a cat.", "Classify this comment."]
    labels = ["classify|review", "classify|review", "write|poem", "write|poem", "write|poem", "classify|review"]
    return LabelledSet(texts, labels, ["ift_test"] * len(texts))


def test_with_contexts_adds_own_contexts_and_twinned_pairs(ctx_ieb):
    args = TrainingArguments.from_recipe("long-context", data_dir=str(ctx_ieb), contexts=1.0, init_adapter=None)
    data = _small_set()
    out, report, sampler = with_contexts(args, data, data.stats())
    n_own = report["contexts"]["own_context_rows"]
    assert n_own == 3 and report["contexts"]["swapped_pairs"] == len(data)
    assert len(out) == len(data) + n_own + 2 * len(data)
    assert out.texts[: len(data)] == data.texts  # the plain instructions stay
    assert isinstance(sampler, ContextTripletSampler) and len(sampler.twins) == 2 * len(data)
    for a, b in sampler.twins.items():
        assert sampler.twins[b] == a and out.labels[a] != out.labels[b]
        shared = {w for w in out.texts[a].split() if len(w) > 3} & {w for w in out.texts[b].split() if len(w) > 3}
        assert shared  # the same passage window
    assert [p["set"] for p in report["provenance"]] == ["ift_test", "eft_train_unsup", "held out", "joins"]
    negatives = [n for a, _, n in sampler.epoch(0) if a in sampler.twins]
    assert any(sampler.twins[a] == n for (a, _, n) in sampler.epoch(0) if a in sampler.twins) and negatives
    assert with_contexts(args, data, data.stats())[0].texts == out.texts  # seeded


def test_contexts_need_the_ieb_folder():
    args = TrainingArguments(contexts=0.5)
    with pytest.raises(TrainingDataError, match="needs data_dir"):
        with_contexts(args, _small_set(), {})


def test_joins_hold_both_parts():
    assert all("{i}" in j and "{p}" in j for j in JOINS)
    assert any(j.index("{p}") < j.index("{i}") for j in JOINS)  # some put the passage first


@pytest.mark.parametrize(("changes", "match"), [
    ({"contexts": 1.5}, "contexts=1.5 is out of range"),
    ({"init_adapter": "pie-minilm", "method": "full"}, "needs method='lora'"),
])
def test_arguments_checks(changes, match):
    with pytest.raises(TrainingConfigError, match=match):
        TrainingArguments(**changes)


def test_warm_start_refuses_non_artifacts(tmp_path):
    from pie_retriever.training.warm_start import resolve_adapter

    with pytest.raises(TrainingConfigError, match="not a trained artifact"):
        resolve_adapter("minilm")


@pytest.mark.slow
def test_warm_start_reproduces_the_shipped_adapter():
    """Before any step, a run initialised from pie-minilm embeds exactly as the shipped model does."""
    import torch

    from pie_retriever.encoders.models import MODEL_ALIASES
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.training.trainer import _setup_model
    from pie_retriever.training.warm_start import init_adapter

    if "pie-minilm" not in MODEL_ALIASES:
        pytest.skip("no shipped pie-minilm artifact")
    args = TrainingArguments(init_adapter="pie-minilm", max_length=256)
    encoder, model, _ = _setup_model(args)
    info = init_adapter(model, args)
    assert info["modules"] == 36 and len(info["sha256"]) == 64
    model.eval()
    texts = ["Write a poem about the sea.", "Summarize the following article in two sentences."]
    enc = encoder.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = torch.nn.functional.normalize(encoder.pooled(model(**enc), enc["attention_mask"]), dim=-1).numpy()
    shipped = TransformerEncoder("pie-minilm", precision="fp32").encode(texts)
    assert np.allclose((ours * shipped).sum(axis=1), 1.0, atol=1e-4)
