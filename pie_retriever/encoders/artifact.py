"""Trained artifacts: small weight files on top of a base model, plus a manifest (read side).

An artifact folder holds ``pie_artifact.json``::

    {"format": "pie-artifact", "version": 1, "base": "minilm", "prompt": "pie", "pooling": "mean",
     "type": "lora" | "delta", "files": {"lora": "lora.safetensors", "delta": "delta.safetensors",
     "head": "head.safetensors"}, "lora": {"r": 32, "alpha": 32, "scaling": 1.0}, "training": {...}}

* ``lora.safetensors``: for each adapted linear module ``<name>``, tensors ``<name>.lora_A`` (r × in)
  and ``<name>.lora_B`` (out × r), fp16. Loading merges ``W += scaling · B @ A`` in fp32 — no peft needed
  at inference time.
* ``delta.safetensors``: ``<parameter name>`` → fp16 difference to add to the base parameter.
* ``head.safetensors`` (optional): ``weight`` (out × in) and optional ``bias`` of a linear projection
  applied to pooled vectors.

This module reads, validates and applies artifacts (the core's ``TransformerEncoder`` calls
:func:`apply_artifact`; it imports only torch and safetensors). ``pie_retriever.training`` writes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from pie_retriever.errors import ArtifactError

__all__ = ["ARTIFACT_MANIFEST", "ARTIFACT_TYPES", "FILES", "FORMAT_NAME", "FORMAT_VERSION", "ArtifactError",
           "apply_artifact", "read_manifest"]

ARTIFACT_MANIFEST = "pie_artifact.json"
FORMAT_NAME = "pie-artifact"
FORMAT_VERSION = 1
ARTIFACT_TYPES: dict[str, str] = {
    "lora": "low-rank adapters merged into the base weights at load time",
    "delta": "fp16 differences added to base parameters",
    "head": "only a linear projection head on pooled vectors",
}
FILES = {"lora": "lora.safetensors", "delta": "delta.safetensors", "head": "head.safetensors"}


def read_manifest(artifact_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(artifact_dir) / ARTIFACT_MANIFEST
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as exc:
        msg = f"{Path(artifact_dir)} is not a pie_retriever artifact: {ARTIFACT_MANIFEST} is missing."
        raise ArtifactError(msg) from exc
    except json.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc})."
        raise ArtifactError(msg) from exc
    if not isinstance(meta, dict) or "base" not in meta:
        msg = f"{path} must be a JSON object with at least a 'base' model; got {str(meta)[:80]!r}."
        raise ArtifactError(msg)
    kind = meta.get("type", "lora")
    if kind not in ARTIFACT_TYPES:
        msg = f"{path}: unknown artifact type {kind!r}; known: {', '.join(ARTIFACT_TYPES)}."
        raise ArtifactError(msg)
    version = meta.get("version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        msg = f"{path} has artifact format version {version}; this pie_retriever reads up to {FORMAT_VERSION}. Upgrade pie-retriever."
        raise ArtifactError(msg)
    return meta


def _load_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    if not path.is_file():
        msg = f"Artifact file {path} is missing (named in {ARTIFACT_MANIFEST})."
        raise ArtifactError(msg)
    return load_file(str(path))


def _build_head(tensors: Mapping[str, Any]) -> Any:
    import torch

    if "weight" not in tensors:
        msg = f"head.safetensors must hold 'weight' (and optionally 'bias'); found {sorted(tensors)}."
        raise ArtifactError(msg)
    weight = tensors["weight"].float()
    bias = tensors.get("bias")
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias.float())
    head.eval()
    return head


def apply_artifact(model: Any, artifact_dir: str | os.PathLike) -> tuple[Any, Any]:
    """Apply an artifact to a loaded base model (in place). Returns ``(model, head_or_None)``."""
    import torch

    artifact_dir = Path(artifact_dir)
    meta = read_manifest(artifact_dir)
    files = {**FILES, **(meta.get("files") or {})}
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    applied = 0
    with torch.no_grad():
        if (meta.get("files") or {}).get("lora") or meta.get("type") == "lora":
            tensors = _load_tensors(artifact_dir / files["lora"])
            scaling = float((meta.get("lora") or {}).get("scaling", 1.0))
            names = sorted({k.rsplit(".", 1)[0] for k in tensors})
            for name in names:
                a, b = tensors.get(f"{name}.lora_A"), tensors.get(f"{name}.lora_B")
                module = modules.get(name)
                if a is None or b is None:
                    msg = f"{files['lora']}: module {name!r} needs both '.lora_A' and '.lora_B'."
                    raise ArtifactError(msg)
                if module is None or not hasattr(module, "weight"):
                    msg = f"Artifact {artifact_dir} adapts module {name!r}, which the base model does not have; is 'base' right ({meta['base']!r})?"
                    raise ArtifactError(msg)
                update = (b.float() @ a.float()) * scaling
                if tuple(update.shape) != tuple(module.weight.shape):
                    msg = f"Artifact update for {name!r} has shape {tuple(update.shape)}, base weight {tuple(module.weight.shape)}."
                    raise ArtifactError(msg)
                module.weight.add_(update.to(module.weight.dtype))
                applied += 1
        if (meta.get("files") or {}).get("delta") or meta.get("type") == "delta":
            tensors = _load_tensors(artifact_dir / files["delta"])
            for name, delta in tensors.items():
                param = params.get(name)
                if param is None:
                    msg = f"Artifact {artifact_dir} changes parameter {name!r}, which the base model does not have."
                    raise ArtifactError(msg)
                if tuple(delta.shape) != tuple(param.shape):
                    msg = f"Artifact delta for {name!r} has shape {tuple(delta.shape)}, base parameter {tuple(param.shape)}."
                    raise ArtifactError(msg)
                param.add_(delta.to(param.dtype))
                applied += 1
    head = None
    if (meta.get("files") or {}).get("head") or meta.get("type") == "head":
        head = _build_head(_load_tensors(artifact_dir / files["head"]))
        applied += 1
    if applied == 0:
        msg = f"Artifact {artifact_dir} applies no weights (type {meta.get('type')!r}, files {meta.get('files')})."
        raise ArtifactError(msg)
    return model, head
