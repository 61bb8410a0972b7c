"""FLOP/s and encoding paths for the speed section.

* :func:`matmul_flops` — what this CPU sustains on a large torch matmul (fp32 and bf16): the reference.
* :func:`count_encoder_flops` — FLOPs of one ``encoder.encode`` call counted by ``torch.utils.flop_counter``
  (linear layers + attention, at the actual padded shapes), to turn a timing into achieved FLOP/s.
* :func:`naive_encode` — the encoder's model run the simple way (texts in their given order, each batch
  padded to its longest text, float32) as the baseline for the core's sorted-batch path (fp32 by default, bf16 opt-in).
* :func:`encode_comparison` — texts/s of the core path against the naive one (and two mixed variants).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from pie_retriever.encoders.base import l2_normalize
from pie_retriever.evaluation.bench.config import check_choices

__all__ = ["count_encoder_flops", "encode_comparison", "matmul_flops", "naive_encode"]


def matmul_flops(dtype: str = "float32", n: int = 2048, min_seconds: float = 1.0, m: int | None = None, k: int | None = None) -> dict[str, Any]:
    """Best achieved FLOP/s of ``(m×k) @ (k×n)`` torch matmuls (square ``n`` by default) over ``min_seconds``."""
    import torch

    m = m or n
    k = k or n
    dt = getattr(torch, dtype)
    a = torch.randn(m, k).to(dt)
    b = torch.randn(k, n).to(dt)
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up
        best = float("inf")
        spent = 0.0
        reps = 0
        while spent < min_seconds or reps < 3:
            t0 = time.perf_counter()
            torch.matmul(a, b)
            dt_s = time.perf_counter() - t0
            best = min(best, dt_s)
            spent += dt_s
            reps += 1
    flops = 2.0 * m * n * k
    return {"dtype": dtype, "shape": [m, k, n], "best_s": best, "flop_per_s": flops / best, "reps": reps}


def _sdpa_cpu_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_encoder_flops(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` (e.g. ``lambda: encoder.encode(texts)``) under ``FlopCounterMode`` and return its FLOPs.

    torch counts matmuls/linear layers itself; the CPU flash-attention kernel that ``sdpa`` dispatches to is
    not in its table, so it is added here with torch's own attention formula (4·b·h·s²·d_head).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _sdpa_cpu_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"flops": int(counter.get_total_flops()), "by_op": by_op}


# -- encoding paths --------------------------------------------------------------------------------
def naive_encode(encoder: Any, texts: Sequence[str], *, prompt: str | None = None, sort: bool = False,
                 bf16: bool = False, batch_size: int | None = None) -> np.ndarray:
    """Run ``encoder``'s transformer the simple way: batches in the given order (``sort=False``), each padded
    to its longest text, float32 (``bf16=False``). Same model, prompt, pooling and head as ``encoder.encode``."""
    import torch

    from pie_retriever.encoders.prompts import apply_prompt, resolve_prompt

    template = resolve_prompt(prompt) if prompt is not None else encoder.prompt
    prompted = [apply_prompt(template, t) for t in texts]
    order = np.arange(len(prompted))
    if sort:
        lengths = [len(ids) for ids in encoder.tokenizer(prompted, truncation=True, max_length=encoder.max_length)["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
    bs = batch_size or encoder.batch_size
    out = np.empty((len(prompted), encoder.dim), dtype=np.float32)
    need_hidden = encoder.pooling == "last2"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            batch = encoder.tokenizer([prompted[i] for i in idx], padding=True, truncation=True,
                                      max_length=encoder.max_length, return_tensors="pt")
            result = encoder.model(**batch, output_hidden_states=need_hidden)
            pooled = encoder.pooled(result, batch["attention_mask"])
            if encoder.head is not None:
                pooled = encoder.head(pooled)
            out[idx] = pooled.float().numpy()
    return l2_normalize(out)


def encode_comparison(encoder: Any, texts: Sequence[str], *, prompt: str = "pie", rounds: int = 2,
                      variants: Sequence[str] = ("core", "naive", "sorted_fp32", "unsorted_bf16"),
                      progress: Any = None) -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*longer than max_length.*")  # every path truncates alike
        return _encode_comparison(encoder, texts, prompt=prompt, rounds=rounds, variants=variants, progress=progress)


def _encode_comparison(encoder: Any, texts: Sequence[str], *, prompt: str, rounds: int, variants: Sequence[str],
                       progress: Any) -> dict[str, Any]:
    """Texts/s of the core path (``encoder.encode``: length-sorted batches in the encoder's precision, fp32 unless
    ``precision="bf16"``) against the naive path (given order, pad-to-longest per batch, fp32), interleaved ``rounds`` times
    (best round kept) so that machine-load drift hits every variant alike. Also returns the cosine agreement
    of the core vectors with the naive fp32 vectors and the FLOPs of each path."""
    texts = list(texts)
    runs: dict[str, Callable[[], np.ndarray]] = {
        "core": lambda: encoder.encode(texts, prompt=prompt, show_progress=False),
        "naive": lambda: naive_encode(encoder, texts, prompt=prompt, sort=False, bf16=False),
        "sorted_fp32": lambda: naive_encode(encoder, texts, prompt=prompt, sort=True, bf16=False),
        "unsorted_bf16": lambda: naive_encode(encoder, texts, prompt=prompt, sort=False, bf16=True),
    }
    check_choices("encode variant", variants, runs)
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    runs["core"]()  # warm-up (allocator, kernels) outside the timed rounds
    for _ in range(rounds):
        for v in variants:
            t0 = time.perf_counter()
            vectors[v] = runs[v]()
            best[v] = min(best.get(v, float("inf")), time.perf_counter() - t0)
            if progress is not None:
                progress.update(1)
    out: dict[str, Any] = {
        "n_texts": len(texts), "prompt": prompt, "rounds": rounds, "batch_size": encoder.batch_size,
        "core_uses_bf16": bool(getattr(encoder, "use_bf16", False)),
        "seconds": {v: round(s, 4) for v, s in best.items()},
        "texts_per_s": {v: len(texts) / s for v, s in best.items()},
    }
    if "naive" in best:
        out["speedup_core_vs_naive"] = best["naive"] / best["core"]
        cos = np.sum(vectors["core"] * vectors["naive"], axis=1)
        out["cosine_core_vs_naive"] = {"min": float(cos.min()), "mean": float(cos.mean())}
    flops = {}
    for v in variants:
        if v in ("core", "naive"):
            flops[v] = count_encoder_flops(runs[v])["flops"]
    out["flops"] = flops
    return out
