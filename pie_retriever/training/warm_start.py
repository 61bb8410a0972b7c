"""Warm start: initialise a LoRA run from a trained LoRA artifact (``TrainingArguments.init_adapter``).

The new run keeps the artifact's adapter shape (same base model, rank, scaling and adapted modules) and goes on
training from its weights, e.g. the shipped ``pie-minilm`` continued on long-context data. The result is again one
LoRA adapter on the plain base model, as small as the one it started from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pie_retriever.errors import TrainingConfigError

__all__ = ["init_adapter", "resolve_adapter"]


def resolve_adapter(spec: str) -> Path:
    """An artifact folder from a model alias (``pie-minilm``) or a path; it must hold a LoRA adapter."""
    from pie_retriever.encoders.artifact import read_manifest
    from pie_retriever.encoders.models import resolve_model

    folder = Path(spec)
    if not (folder / "pie_artifact.json").is_file():
        resolved = resolve_model(spec)
        if resolved.artifact is None:
            msg = f"init_adapter={spec!r} is not a trained artifact (no pie_artifact.json); pass an artifact folder or an alias such as 'pie-minilm'."
            raise TrainingConfigError(msg)
        folder = Path(resolved.artifact)
    meta = read_manifest(folder)
    if meta.get("type") != "lora":
        msg = f"init_adapter={spec!r} is a {meta.get('type')!r} artifact; a warm start needs a LoRA artifact."
        raise TrainingConfigError(msg)
    return folder


def init_adapter(model: Any, args: Any) -> dict[str, Any]:
    """Copy the LoRA A/B weights of ``args.init_adapter`` into the peft ``model``; returns its provenance.

    Every adapted module of the new model must have its pair in the artifact, with the same rank and scaling.
    """
    import torch

    from pie_retriever.encoders.artifact import lora_pairs, read_manifest

    folder = resolve_adapter(args.init_adapter)
    meta = read_manifest(folder)
    if meta.get("base") != args.base_model:
        msg = f"init_adapter {folder} was trained on base {meta.get('base')!r}, this run on {args.base_model!r}; use the same base."
        raise TrainingConfigError(msg)
    path = folder / (meta.get("files") or {}).get("lora", "lora.safetensors")
    from safetensors.torch import load_file

    pairs = lora_pairs(load_file(str(path)), str(path))  # either layout: PEFT's or the older one
    prefix = "base_model.model."
    copied = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if not (hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {})):
                continue
            clean = name[len(prefix):] if name.startswith(prefix) else name
            a, b = pairs.get(clean, (None, None))
            target_a, target_b = module.lora_A["default"].weight, module.lora_B["default"].weight
            if a is None or b is None or a.shape != target_a.shape or b.shape != target_b.shape:
                msg = (f"init_adapter {folder} has no matching LoRA pair for module {clean!r} (rank {args.lora_r}, shapes "
                       f"{tuple(target_a.shape)}/{tuple(target_b.shape)}); use the adapter's rank and targets.")
                raise TrainingConfigError(msg)
            if abs(float(module.scaling["default"]) - float((meta.get("lora") or {}).get("scaling", 1.0))) > 1e-6:
                msg = f"init_adapter {folder} has LoRA scaling {meta['lora'].get('scaling')}, this run {module.scaling['default']}; use the same lora_alpha / lora_r."
                raise TrainingConfigError(msg)
            target_a.copy_(a.float())
            target_b.copy_(b.float())
            copied += 1
    return {"init_adapter": str(args.init_adapter), "modules": copied, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "created": meta.get("created"), "sources": (meta.get("training") or {}).get("sources"),
            "steps": meta.get("steps"), "data": {k: (meta.get("data") or {}).get(k) for k in ("instructions", "labels", "by_source")}}
