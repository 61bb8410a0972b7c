"""Supervised InfoNCE (SimCSE-style) with same-label in-batch negatives masked out.

For anchor ``i`` the candidates are every positive and every hard negative of the batch; the target is
its own positive ``i``. A candidate ``j != i`` whose label equals the anchor's is *not* a negative (it is
another instance of the same task) and is masked out — the paper's code does not do this, which
pushes apart instructions of the same task whenever two land in one batch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["info_nce", "same_label_mask"]


def same_label_mask(anchor_labels: Any, candidate_labels: Any, *, positive_offset: int = 0) -> Any:
    """Bool ``(n_anchors, n_candidates)``: True where a candidate must be ignored (same label, not the target)."""
    import torch

    a = torch.as_tensor(anchor_labels).view(-1, 1)
    c = torch.as_tensor(candidate_labels).view(1, -1)
    mask = a == c
    rows = torch.arange(a.shape[0])
    mask[rows, rows + positive_offset] = False
    return mask


def info_nce(
    anchors: Any,
    positives: Any,
    anchor_labels: Any,
    *,
    negatives: Any | None = None,
    negative_labels: Any | None = None,
    temperature: float = 0.05,
    mask_same_label: bool = True,
) -> Any:
    """Mean InfoNCE loss.

    Args:
        anchors, positives: ``(B, d)`` L2-normalised embeddings; ``positives[i]`` is anchor ``i``'s target.
        anchor_labels: ``(B,)`` integer label ids (positive ``i`` has ``anchor_labels[i]``).
        negatives, negative_labels: optional ``(M, d)`` hard negatives and their ``(M,)`` label ids.
        temperature: softmax temperature (the paper: 0.05).
        mask_same_label: drop in-batch candidates that share the anchor's label.
    """
    import torch
    import torch.nn.functional as F

    if anchors.shape != positives.shape:
        msg = f"anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)} must have the same shape."
        raise ValueError(msg)
    labels = torch.as_tensor(anchor_labels, device=anchors.device)
    cands = positives
    cand_labels = labels
    if negatives is not None:
        if negative_labels is None:
            msg = "negative_labels is required when negatives are given (for same-label masking)."
            raise ValueError(msg)
        cands = torch.cat([positives, negatives], dim=0)
        cand_labels = torch.cat([labels, torch.as_tensor(negative_labels, device=anchors.device)])
    logits = anchors @ cands.T / temperature
    if mask_same_label:
        mask = same_label_mask(labels.cpu(), cand_labels.cpu()).to(anchors.device)
        logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    target = torch.arange(anchors.shape[0], device=anchors.device)
    return F.cross_entropy(logits.float(), target)
