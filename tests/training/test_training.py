from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pie_retriever.training.args import RECIPES, TrainingArguments, TrainingConfigError
from pie_retriever.training.data import (
    LabelledSet,
    TripletSampler,
    build_training_set,
    canonicalize_labels,
    filter_and_dedupe,
    label_pairs,
)


# -- arguments ------------------------------------------------------------------------------------------
def test_arguments_defaults_and_recipes():
    args = TrainingArguments()
    assert args.temperature == 0.05 and args.method == "lora" and args.prompt == "plain"
    assert TrainingArguments.from_recipe("default") == args
    for name in RECIPES:
        TrainingArguments.from_recipe(name)
    d = args.to_dict()
    assert TrainingArguments.from_dict(d) == args


def test_arguments_unknown_key():
    with pytest.raises(TrainingConfigError, match=r"Unknown training argument\(s\) \['lr'\]"):
        TrainingArguments.from_dict({"lr": 1e-4})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("method", "qlora", "method='qlora' is not valid; choose one of: lora, full"),
        ("pooling", "max", "pooling='max' is not valid"),
        ("batch_size", 1, "batch_size must be an int >= 2"),
        ("temperature", 0.0, "temperature=0.0 is out of range"),
        ("sources", ("eft_test",), "source='eft_test' is not valid"),
        ("max_steps", 0, "max_steps must be None or an int >= 1"),
        ("prompt", "Embed {text}", "unknown placeholder"),
    ],
)
def test_arguments_validation(key, value, match):
    with pytest.raises(ValueError, match=match):
        TrainingArguments(**{key: value})


# -- data -----------------------------------------------------------------------------------------------
def test_label_pairs():
    assert label_pairs("decide|statement##determine|statement") == [("decide", "statement"), ("determine", "statement")]


def test_filter_and_dedupe_drops_held_out_duplicates_and_fallback():
    data = LabelledSet()
    data.extend(["Write a poem.", "write  a POEM. ", "Held out one", "Label me", "Other"],
                ["write|poem", "write|poem", "x|y", "none|none", "do|thing"], "s")
    out, dropped = filter_and_dedupe(data, {"held out ONE"})
    assert out.texts == ["Write a poem.", "Other"]
    assert dropped == {"held_out": 1, "duplicate": 1, "unlabelled": 1, "empty": 0}


def test_canonicalize_labels_maps_synonym_pairs():
    assert canonicalize_labels(["determine|statement", "write|poem"], ["decide|statement##determine|statement"]) == [
        "decide|statement##determine|statement", "write|poem"]


LABELS = ["write|poem"] * 3 + ["write|story"] * 2 + ["summarize|poem"] * 2 + ["translate|sentence"] * 2 + ["count|word"]


def test_sampler_positives_and_hard_negatives():
    s = TripletSampler(LABELS, seed=1)
    triplets = s.epoch(0)
    assert len(triplets) == 9  # every member of a label with >= 2 members is an anchor
    for a, p, n in triplets:
        assert a != p and LABELS[a] == LABELS[p] and LABELS[n] != LABELS[a]
        va, na = LABELS[a].split("|")
        vn, nn = LABELS[n].split("|")
        if LABELS[a] != "translate|sentence":  # translate|sentence has no label sharing its verb or noun
            assert va == vn or na == nn
    assert s.hard["write|poem"] == ["summarize|poem", "write|story"]


def test_sampler_is_seeded():
    assert TripletSampler(LABELS, seed=3).epoch(0) == TripletSampler(LABELS, seed=3).epoch(0)
    assert TripletSampler(LABELS, seed=3).epoch(0) != TripletSampler(LABELS, seed=3).epoch(1)
    assert TripletSampler(LABELS, seed=3).epoch(0) != TripletSampler(LABELS, seed=4).epoch(0)


def test_sampler_caps_and_batches():
    labels = ["a|b"] * 50 + ["c|d"] * 2
    s = TripletSampler(labels, seed=0, max_anchors_per_label=5)
    assert Counter(labels[a] for a, _, _ in s.epoch(0)) == {"a|b": 5, "c|d": 2}
    batches = list(s.batches(3))
    assert [len(b) for b in batches] == [3, 3]  # the trailing batch of one triplet is dropped
    assert s.steps_per_epoch(3) == 2


def test_sampler_needs_positives():
    with pytest.raises(ValueError, match="no positive pairs"):
        TripletSampler(["a|b", "c|d"])


@pytest.fixture
def tiny_ieb(tmp_path):
    def ieb(rows):
        out = {}
        for label, text in rows:
            out.setdefault(label, {"number": 0, "samples": []})["samples"].append(
                {"category": label.split("##")[0].split("|"), "instruction": text})
        return out

    ift = ieb([("write|poem", "Write a poem about dogs."), ("write|poem", "Write a poem about cats."),
               ("write|poem", "Write a poem about the sea."), ("summarize|text", "Summarize the text."),
               ("summarize|text", "Summarize this text in one line."), ("count|word", "Count the words.")])
    eft = ieb([("translate|sentence", "Translate to French."), ("translate|sentence", "Write a poem about the sea.")])
    iis = [{"instruction1": "Summarize the text.", "intention1": "summarize|text", "instruction2": "Translate to French.",
            "intention2": "translate|sentence", "label": 0}]
    (tmp_path / "ift_test.json").write_text(json.dumps(ift))
    (tmp_path / "eft_test.json").write_text(json.dumps(eft))
    (tmp_path / "intention_similarity_test.json").write_text(json.dumps(iis))
    return tmp_path


def test_build_training_set_always_drops_eval_instructions(tiny_ieb):
    data, report = build_training_set(tiny_ieb, ["ift_test"])
    assert "Write a poem about the sea." not in data.texts  # in eft_test
    assert "Summarize the text." not in data.texts  # in intention_similarity_test
    assert report["dropped"]["held_out"] == 2
    assert sorted(set(data.labels)) == ["count|word", "summarize|text", "write|poem"]


def test_build_training_set_requires_eval_files(tmp_path):
    (tmp_path / "ift_test.json").write_text("{}")
    with pytest.raises(ValueError, match="needed to keep every evaluation instruction out"):
        build_training_set(tmp_path, ["ift_test"])


def test_silver_labels_cached(tmp_path, monkeypatch):
    from pie_retriever import labeling
    from pie_retriever.training import data as data_mod

    calls = []

    def fake(texts, batch_size=64, show_progress=None):
        calls.append(len(texts))
        return ["write|poem" for _ in texts]

    monkeypatch.setattr(labeling, "label_instructions", fake)
    assert data_mod.silver_labels(["a", "b"], cache_dir=tmp_path) == ["write|poem"] * 2
    assert data_mod.silver_labels(["a", "b"], cache_dir=tmp_path) == ["write|poem"] * 2
    assert calls == [2]


# -- loss -----------------------------------------------------------------------------------------------
def test_info_nce_matches_manual_and_masks_same_label():
    torch = pytest.importorskip("torch")
    from pie_retriever.training.loss import info_nce, same_label_mask

    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    n = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    labels = torch.tensor([0, 1, 2, 3])
    neg_labels = torch.tensor([4, 5, 6, 7])
    loss = info_nce(a, p, labels, negatives=n, negative_labels=neg_labels, temperature=0.05)
    logits = a @ torch.cat([p, n]).T / 0.05
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.arange(4)).item(), rel=1e-5)

    # anchors 0 and 1 share a label: candidate 1 must not count as a negative of anchor 0 (and vice versa)
    same = torch.tensor([0, 0, 2, 3])
    mask = same_label_mask(same, torch.cat([same, neg_labels]))
    assert mask[0, 1] and mask[1, 0] and not mask[0, 0] and not mask[1, 1] and mask.sum() == 2
    masked = info_nce(a, p, same, negatives=n, negative_labels=neg_labels)
    unmasked = info_nce(a, p, same, negatives=n, negative_labels=neg_labels, mask_same_label=False)
    assert masked.item() != pytest.approx(unmasked.item())
    # moving the masked candidate does not change the loss
    p2 = p.clone()
    p2[1] = -p2[1]
    l0 = torch.nn.functional.cross_entropy((a[:1] @ torch.cat([p, n]).T / 0.05).masked_fill(mask[:1], -1e9), torch.tensor([0]))
    l0b = torch.nn.functional.cross_entropy((a[:1] @ torch.cat([p2, n]).T / 0.05).masked_fill(mask[:1], -1e9), torch.tensor([0]))
    assert l0.item() == pytest.approx(l0b.item(), rel=1e-6)


def test_info_nce_shape_errors():
    torch = pytest.importorskip("torch")
    from pie_retriever.training.loss import info_nce

    with pytest.raises(ValueError, match="same shape"):
        info_nce(torch.zeros(2, 4), torch.zeros(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="negative_labels is required"):
        info_nce(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, 1]), negatives=torch.zeros(2, 4))


# -- artifacts ------------------------------------------------------------------------------------------
def _tiny_bert():
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    return BertModel(cfg)


def test_artifact_lora_roundtrip(tmp_path):
    torch = pytest.importorskip("torch")
    from pie_retriever.encoders.artifact import apply_artifact, read_manifest
    from pie_retriever.training.artifact import artifact_size, save_artifact

    model = _tiny_bert()
    name = "encoder.layer.0.attention.self.query"
    w0 = dict(model.named_modules())[name].weight.detach().clone()
    a, b = torch.randn(4, 16), torch.randn(16, 4)
    path = save_artifact(tmp_path / "art", base="minilm", prompt="pie", pooling="mean",
                         lora={name: (a, b)}, lora_config={"r": 4, "alpha": 8, "scaling": 2.0}, extra={"note": "x"})
    meta = read_manifest(path)
    assert meta["type"] == "lora" and meta["prompt"] == "pie" and meta["note"] == "x"
    assert artifact_size(path) > 0
    model, head = apply_artifact(model, path)
    assert head is None
    expected = w0 + 2.0 * (b.half().float() @ a.half().float())
    assert torch.allclose(dict(model.named_modules())[name].weight, expected, atol=1e-4)


def test_artifact_delta_and_head(tmp_path):
    torch = pytest.importorskip("torch")
    from pie_retriever.encoders.artifact import apply_artifact
    from pie_retriever.training.artifact import save_artifact

    model = _tiny_bert()
    p0 = model.embeddings.LayerNorm.weight.detach().clone()
    head = torch.nn.Linear(16, 8)
    path = save_artifact(tmp_path / "art", base="minilm", prompt="plain", pooling="cls",
                         delta={"embeddings.LayerNorm.weight": torch.full((16,), 0.5)}, head=head)
    model, loaded = apply_artifact(model, path)
    assert torch.allclose(model.embeddings.LayerNorm.weight, p0 + 0.5)
    assert loaded.out_features == 8
    assert torch.allclose(loaded.weight, head.weight.half().float())


def test_artifact_errors(tmp_path):
    torch = pytest.importorskip("torch")
    from pie_retriever.encoders.artifact import ArtifactError, apply_artifact, read_manifest
    from pie_retriever.training.artifact import save_artifact

    with pytest.raises(ArtifactError, match="pie_artifact.json is missing"):
        read_manifest(tmp_path)
    path = save_artifact(tmp_path / "a", base="minilm", prompt="pie", pooling="mean",
                         lora={"no.such.module": (torch.zeros(2, 16), torch.zeros(16, 2))}, lora_config={"scaling": 1.0})
    with pytest.raises(ArtifactError, match="does not have"):
        apply_artifact(_tiny_bert(), path)
    with pytest.raises(ArtifactError, match="at least one of"):
        save_artifact(tmp_path / "b", base="minilm", prompt="pie", pooling="mean")


def test_artifact_folder_resolves_through_core(tmp_path):
    torch = pytest.importorskip("torch")
    from pie_retriever.encoders.models import resolve_model
    from pie_retriever.training.artifact import save_artifact

    path = save_artifact(tmp_path / "art", base="minilm", prompt="pie", pooling="mean",
                         delta={"embeddings.LayerNorm.bias": torch.zeros(384)})
    resolved = resolve_model(str(path))
    assert resolved.artifact == path.resolve() and resolved.default_prompt == "pie"
    assert resolved.path == resolve_model("minilm").path


# -- CLI ------------------------------------------------------------------------------------------------
def test_train_cli_print_config(capsys, tmp_path):
    from pie_retriever.cli import main

    assert main(["train", "-o", str(tmp_path / "x"), "--recipe", "tiny", "--set", "lora_r=2", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["lora_r"] == 2 and cfg["max_steps"] == 3


def test_train_cli_unknown_key(capsys, tmp_path):
    from pie_retriever.cli import main

    assert main(["train", "-o", str(tmp_path / "x"), "--set", "colour=red", "--print-config"]) == 1
    assert "Unknown training argument(s) ['colour']" in capsys.readouterr().err


# -- real model (slow) ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_real_training_saves_and_reloads(ieb, tmp_path, minilm):
    from pie_retriever.encoders.models import resolve_model
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.training.trainer import train

    # the paper's prompt (not the default): the artifact must carry it back to the encoder
    args = TrainingArguments.from_recipe("tiny", data_dir=str(ieb), prompt="pie")
    result = train(args, tmp_path / "art", progress=False)
    assert result.steps == 3 and np.isfinite(result.final_loss)
    assert resolve_model(str(result.output_dir)).artifact is not None
    trained = TransformerEncoder(str(result.output_dir))
    base = TransformerEncoder("minilm", prompt="pie", pooling="mean")
    assert trained.prompt == base.prompt and trained.pooling == "mean"
    texts = ["Write a poem about the sea.", "Summarize the following article."]
    v1, v0 = trained.encode(texts), base.encode(texts)
    assert v1.shape == v0.shape == (2, 384)
    assert not np.allclose(v1, v0, atol=1e-4)
    assert trained.fingerprint != base.fingerprint


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pie-minilm", "pie-minilm-lc"])
def test_shipped_models_beat_minilm_on_eft_slice(ieb, model):
    from pie_retriever.encoders.models import DEFAULT_MODEL, MODEL_ALIASES
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.ieb import task_retrieval
    from pie_retriever.evaluation.rankers import EmbeddingRanker
    from pie_retriever.pool.ieb import load_labelled

    if model not in MODEL_ALIASES:
        pytest.skip(f"no shipped {model} artifact")
    assert DEFAULT_MODEL == "pie-minilm-lc"  # the long-context model is the default when it ships
    x, y = load_labelled(ieb / "eft_test.json")
    keep = sorted(set(y))[::6]  # every 6th label: 25 labels, a few hundred instructions
    rows = [i for i, lab in enumerate(y) if lab in keep]
    xs, ys = [x[i] for i in rows], [y[i] for i in rows]
    pie = task_retrieval(EmbeddingRanker(TransformerEncoder(model)), xs, ys)
    plain = task_retrieval(EmbeddingRanker(TransformerEncoder("minilm")), xs, ys)
    assert pie["p@4"] > plain["p@4"] + 0.1
    assert pie["p@4"] > 0.85


def test_package_exports_and_readme_call_shape():
    import pie_retriever.training as training

    assert {"TrainingArguments", "train", "TrainResult", "RECIPES"} <= set(training.__all__)
    # the README's call, without running it
    args = training.TrainingArguments.from_recipe("default", data_dir="../shared/ieb", max_steps=80)
    assert args.max_steps == 80 and args.prompt == "plain" and args.learning_rate == 1e-3
    with pytest.raises(training.TrainingConfigError, match="Unknown training argument"):
        training.TrainingArguments.from_recipe("default", max_step=80)


def test_auto_precision_is_fp32_without_native_bf16(monkeypatch):
    """The default precision does not make training crawl on a CPU without native bf16: there, emulated bf16
    autocast was ~25x slower than fp32 (a CI run on an AVX2-only AMD EPYC ran past 90 minutes)."""
    from pie_retriever.encoders import transformer
    from pie_retriever.training.args import resolve_training_precision

    assert TrainingArguments().precision == "auto"
    monkeypatch.setattr(transformer, "cpu_has_native_bf16", lambda: False)
    assert resolve_training_precision("auto") == "fp32"
    assert resolve_training_precision("bf16") == "bf16"  # asked for explicitly: kept
    monkeypatch.setattr(transformer, "cpu_has_native_bf16", lambda: True)
    import torch

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert resolve_training_precision("auto") == "bf16"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # kernels capped
    assert resolve_training_precision("auto") == "fp32"
    assert resolve_training_precision("fp32") == "fp32"
    assert resolve_training_precision("auto", device="cuda") == "bf16"


def test_lora_artifact_is_a_peft_adapter_and_the_old_layout_still_loads(tmp_path):
    """Training writes LoRA as a PEFT adapter folder: ``PeftModel.from_pretrained`` loads it and gives the same
    outputs as the library's own merge; an artifact in the older ``lora.safetensors`` layout (the shipped models)
    still loads."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from safetensors.torch import save_file

    from pie_retriever.encoders.artifact import apply_artifact
    from pie_retriever.training.artifact import save_artifact

    torch.manual_seed(1)
    names = [f"encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")]
    lora = {n: (torch.randn(4, 16) * 0.3, torch.randn(16, 4) * 0.3) for n in names}
    path = save_artifact(tmp_path / "art", base="minilm", prompt="pie", pooling="mean", lora=lora,
                         lora_config={"r": 4, "alpha": 8, "scaling": 2.0})
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["query", "value"]
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    ours, _ = apply_artifact(_tiny_bert().eval(), path)
    theirs = peft.PeftModel.from_pretrained(_tiny_bert().eval(), str(path)).eval()
    with torch.no_grad():
        a, b = ours(input_ids=ids).last_hidden_state, theirs(input_ids=ids).last_hidden_state
        base = _tiny_bert().eval()(input_ids=ids).last_hidden_state
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, base, atol=1e-2)  # the adapter changes the model

    old = tmp_path / "old"
    old.mkdir()
    save_file({f"{n}.{part}": t.half() for n, (x, y) in lora.items() for part, t in (("lora_A", x), ("lora_B", y))},
              str(old / "lora.safetensors"))
    (old / "pie_artifact.json").write_text(json.dumps({"format": "pie-artifact", "version": 1, "base": "minilm", "type": "lora",
                                                       "prompt": "pie", "pooling": "mean", "files": {"lora": "lora.safetensors"},
                                                       "lora": {"r": 4, "alpha": 8, "scaling": 2.0}}))
    legacy, _ = apply_artifact(_tiny_bert().eval(), old)
    with torch.no_grad():
        assert torch.allclose(legacy(input_ids=ids).last_hidden_state, a, atol=1e-4)
