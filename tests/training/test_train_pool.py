"""Training on the user's own labelled pool: labels from a field, auto-labelling, the split by label, the CLI and a
tiny real run (base vs tuned task match, loss curve, report)."""

from __future__ import annotations

import json

import pytest

from pie_retriever.errors import TrainingDataError
from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries
from pie_retriever.training.data import LabelledSet, labelled_set_from_pool, split_by_label
from pie_retriever.types import Demonstration


def _demos(rows):
    return [Demonstration(t, metadata=m) for t, m in rows]


def test_labelled_set_from_pool_reads_the_field_and_drops_unlabelled():
    demos = _demos([("Write a poem.", {"kind": "poem"}), ("write a  poem.", {"kind": "poem"}), ("Summarize it.", {"kind": "sum"}),
                    ("No label here.", {})])
    data, report = labelled_set_from_pool(demos, label_field="kind")
    assert data.texts == ["Write a poem.", "Summarize it."] and data.labels == ["poem", "sum"]
    assert report["missing_labels"] == 1 and report["dropped"]["unlabelled"] == 1 and report["dropped"]["duplicate"] == 1
    with pytest.raises(TrainingDataError, match=r"No demonstration has a label in metadata\['task'\].*--auto-label"):
        labelled_set_from_pool(demos)


def test_auto_label_fills_only_missing_labels():
    pytest.importorskip("spacy")
    demos = _demos([("Write a poem about the sea.", {"task": "mine"}), ("Why is the sky blue?", {})])
    data, report = labelled_set_from_pool(demos, auto_label=True)
    assert data.labels == ["mine", "why|knowledge"] and data.sources == ["pool", "auto"]
    assert report["auto_labelled"] == 1


def test_split_by_label_is_stratified_seeded_and_keeps_two():
    data = LabelledSet()
    for lab, n in (("a", 10), ("b", 3), ("c", 2)):
        data.extend([f"{lab}{i}" for i in range(n)], [lab] * n, "pool")
    train, held, report = split_by_label(data, 0.2, seed=0)
    assert sorted(held.labels) == ["a", "a", "b"]  # round(10*.2)=2, round(3*.2)=1, c has only 2: kept whole
    assert len(train) + len(held) == len(data) and not set(train.texts) & set(held.texts)
    assert report == {"eval_split": 0.2, "split_by": "instance", "train_instructions": 12, "eval_instructions": 3, "eval_labels": 2}
    assert split_by_label(data, 0.2, seed=0)[1].texts == held.texts
    assert len(split_by_label(data, 0.0)[1]) == 0
    with pytest.raises(TrainingDataError, match=r"eval_split must be a share in \[0, 1\)"):
        split_by_label(data, 1.5)
    tiny = LabelledSet(["x", "y"], ["a", "a"], ["pool", "pool"])
    with pytest.raises(TrainingDataError, match="holds out nothing.*--split-by label"):
        split_by_label(tiny, 0.2)


def test_split_by_whole_labels_and_leave_one_out():
    from pie_retriever.encoders.hashing import HashingEncoder
    from pie_retriever.training.pool import task_match

    data = LabelledSet()
    for i in range(10):
        data.extend([f"write a poem number {i}", f"compose a poem number {i}"], [f"poem{i}"] * 2, "pool")
    data.extend(["a lonely instruction"], ["single"], "pool")
    train, held, report = split_by_label(data, 0.2, seed=1, by="label")
    assert report["eval_labels"] == 2 and len(held) == 4 and not set(held.labels) & set(train.labels)
    assert "single" in train.labels  # singletons stay in training (negatives)
    m = task_match(HashingEncoder(dim=64), held, k=1)  # leave-one-out: a query never finds itself
    assert m["queries"] == 4 and m["pool"] == 3 and 0.0 <= m["p@1"] <= 1.0
    with pytest.raises(ValueError, match="Unknown split mode 'x'"):
        split_by_label(data, 0.2, by="x")


def test_train_cli_print_config_needs_no_output(capsys):
    from pie_retriever.cli import main

    assert main(["train", "--print-config", "--pool", "pool.jsonl"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["max_steps"] is None and cfg["epochs"] == 8  # POOL_DEFAULTS
    assert main(["train", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["max_steps"] == 320
    assert main(["train", "--pool", "pool.jsonl"]) == 1
    assert "Pass -o DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_pool_training_reports_base_and_tuned(tmp_path, capsys):
    from pie_retriever.cli import main

    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(d.to_dict()) for d in load_bundled_pool()), encoding="utf-8")
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(d.to_dict()) for d in load_bundled_queries()[:20]), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "--pool", str(pool), "--eval-queries", str(queries), "-o", str(out), "--quiet",
            "--set", "max_steps=3", "--set", "lora_r=4", "--set", "batch_size=8", "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Task match on 20 held-out instructions" in printed and "base  minilm: P@1" in printed and "tuned " in printed
    assert "shipped default pie-minilm-lc: P@1" in printed  # the row the tuned model has to beat
    report = json.loads((out / "pool_eval.json").read_text())
    assert report["default"]["model"] == "pie-minilm-lc" and report["default"]["queries"] == 20
    assert report["steps"] == 3 and set(report["base"]) >= {"p@1", "p@4", "mrr@10"} and report["tuned"]["queries"] == 20
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG" and (out / "pie_artifact.json").is_file()
    # the split path from Python
    from pie_retriever.training.pool import train_on_pool

    res = train_on_pool(load_bundled_pool(), tmp_path / "run2", eval_split=0.25,
                        overrides={"max_steps": 2, "lora_r": 4, "batch_size": 8, "threads": 1}, progress=False)
    assert res.data_report["eval"] == "split" and res.base["queries"] == res.data_report["eval_instructions"] > 30


def test_the_loss_curves_moving_average_is_bias_corrected():
    from pie_retriever.training.pool import moving_average

    # a loss that falls fast from 4 to 0.5 and stays: after 20 steps the average must read near 0.5, not be held up
    # by the first steps (the uncorrected EMA started at 4.0 read 0.995 here; corrected: 0.579)
    losses = [4.0, 2.0] + [0.5] * 18
    smooth = moving_average(losses)
    assert smooth[0] == pytest.approx(4.0)
    assert smooth[-1] < 0.65
    assert moving_average([1.0] * 5) == pytest.approx([1.0] * 5)  # a constant stays constant from step 1
