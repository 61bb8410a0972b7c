"""Trained artifacts: small weight files on top of a base model, plus a manifest (read side).

An artifact folder holds ``pie_artifact.json``::

    {"format": "pie-artifact", "version": 1, "base": "minilm", "prompt": "pie", "pooling": "mean",
     "type": "lora" | "delta", "files": {"lora": "lora.safetensors", "delta": "delta.safetensors",
     "head": "head.safetensors"}, "lora": {"r": 32, "alpha": 32, "scaling": 1.0}, "training": {...}}

* LoRA, written as a PEFT adapter: ``adapter_model.safetensors`` with ``base_model.model.<name>.lora_A.weight``
  (r × in) and ``...lora_B.weight`` (out × r) for each adapted linear module ``<name>``, fp16, and
  ``adapter_config.json`` (``peft_type: LORA``, ``r``, ``lora_alpha``, ``target_modules``), so
  ``peft.PeftModel.from_pretrained(base_model, folder)`` loads it. Artifacts written before (the shipped models)
  hold ``lora.safetensors`` with ``<name>.lora_A`` / ``<name>.lora_B``; both are read. Loading merges
  ``W += scaling · B @ A`` in fp32 — no peft needed at inference time.
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

__all__ = ["ARTIFACT_MANIFEST", "ARTIFACT_TYPES", "FILES", "FORMAT_NAME", "FORMAT_VERSION", "PEFT_CONFIG", "PEFT_FILE",
           "PEFT_PREFIX", "ArtifactError", "apply_artifact", "lora_pairs", "read_manifest"]

ARTIFACT_MANIFEST = "pie_artifact.json"
FORMAT_NAME = "pie-artifact"
FORMAT_VERSION = 1
ARTIFACT_TYPES: dict[str, str] = {
    "lora": "low-rank adapters merged into the base weights at load time",
    "delta": "fp16 differences added to base parameters",
    "head": "only a linear projection head on pooled vectors",
}
FILES = {"lora": "lora.safetensors", "delta": "delta.safetensors", "head": "head.safetensors"}
#: The PEFT adapter layout that training writes (``lora.safetensors`` above is the older layout, still read).
PEFT_FILE = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."


def lora_pairs(tensors: Mapping[str, Any], source: str = FILES["lora"]) -> dict[str, tuple[Any, Any]]:
    """``{module name: (A, B)}`` from a LoRA file in either layout: PEFT's ``base_model.model.<name>.lora_A.weight``
    or the older ``<name>.lora_A``. ArtifactError when a module lacks one of its pair."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        name = name[: -len(".weight")] if name.endswith((".lora_A.weight", ".lora_B.weight")) else name
        module, _, part = name.rpartition(".")
        if part not in ("lora_A", "lora_B") or not module:
            msg = f"{source}: tensor {key!r} is not a LoRA weight (expected '<module>.lora_A' / '<module>.lora_B')."
            raise ArtifactError(msg)
        found.setdefault(module, {})[part] = value
    pairs = {}
    for module, parts in sorted(found.items()):
        if set(parts) != {"lora_A", "lora_B"}:
            msg = f"{source}: module {module!r} needs both '.lora_A' and '.lora_B'."
            raise ArtifactError(msg)
        pairs[module] = (parts["lora_A"], parts["lora_B"])
    return pairs


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
            scaling = float((meta.get("lora") or {}).get("scaling", 1.0))
            for name, (a, b) in lora_pairs(_load_tensors(artifact_dir / files["lora"]), files["lora"]).items():
                module = modules.get(name)
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
