"""Trained artifacts: small weight files on top of a base model, plus a manifest.

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

:func:`apply_artifact` is what the core's ``TransformerEncoder`` calls; it imports only torch and
safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import PIEError
from ..models import ARTIFACT_MANIFEST

__all__ = ["ARTIFACT_TYPES", "ArtifactError", "apply_artifact", "artifact_size", "read_manifest", "save_artifact"]

FORMAT_NAME = "pie-artifact"
FORMAT_VERSION = 1
ARTIFACT_TYPES: dict[str, str] = {
    "lora": "low-rank adapters merged into the base weights at load time",
    "delta": "fp16 differences added to base parameters",
    "head": "only a linear projection head on pooled vectors",
}
FILES = {"lora": "lora.safetensors", "delta": "delta.safetensors", "head": "head.safetensors"}


class ArtifactError(PIEError, ValueError):
    """An artifact folder is missing files, foreign, or does not fit the base model."""


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


def save_artifact(
    output_dir: str | os.PathLike,
    *,
    base: str,
    prompt: str,
    pooling: str,
    lora: Mapping[str, tuple[Any, Any]] | None = None,
    lora_config: Mapping[str, Any] | None = None,
    delta: Mapping[str, Any] | None = None,
    head: Any | None = None,
    extra: Mapping[str, Any] | None = None,
    dtype: str = "float16",
) -> Path:
    """Write an artifact folder atomically (temp folder, then rename). Returns its path.

    Args:
        base: model spec of the base (``"minilm"``); it must resolve wherever the artifact is used.
        prompt: prompt name (``"pie"``) or template; pooling: pooling name.
        lora: ``{module_name: (A, B)}`` with A ``(r, in)`` and B ``(out, r)``; ``lora_config`` needs ``scaling``.
        delta: ``{parameter_name: tensor}`` added to the base parameters.
        head: a ``torch.nn.Linear`` applied to pooled vectors.
        extra: more manifest keys (training arguments, data report, timings).
        dtype: storage dtype of the tensors (``float16`` or ``float32``).
    """
    import torch
    from safetensors.torch import save_file

    from ..prompts import prompt_name, resolve_prompt

    if not (lora or delta or head is not None):
        msg = "save_artifact needs at least one of lora, delta or head."
        raise ArtifactError(msg)
    if dtype not in {"float16", "float32"}:
        msg = f"dtype must be 'float16' or 'float32', got {dtype!r}."
        raise ArtifactError(msg)
    store = torch.float16 if dtype == "float16" else torch.float32
    template = resolve_prompt(prompt)
    name = prompt_name(template)
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        files: dict[str, str] = {}
        meta: dict[str, Any] = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "base": base,
            "prompt": name if name != "custom" else template, "pooling": pooling,
            "type": "lora" if lora else ("delta" if delta else "head"),
        }
        if lora:
            if not lora_config or "scaling" not in lora_config:
                msg = "lora_config with a 'scaling' entry (alpha / r) is required with lora weights."
                raise ArtifactError(msg)
            tensors = {}
            for mod, (a, b) in lora.items():
                tensors[f"{mod}.lora_A"] = a.detach().to(store).contiguous().cpu()
                tensors[f"{mod}.lora_B"] = b.detach().to(store).contiguous().cpu()
            save_file(tensors, str(tmp / FILES["lora"]))
            files["lora"] = FILES["lora"]
            meta["lora"] = dict(lora_config)
        if delta:
            save_file({k: v.detach().to(store).contiguous().cpu() for k, v in delta.items()}, str(tmp / FILES["delta"]))
            files["delta"] = FILES["delta"]
        if head is not None:
            tensors = {"weight": head.weight.detach().to(store).contiguous().cpu()}
            if getattr(head, "bias", None) is not None:
                tensors["bias"] = head.bias.detach().to(store).contiguous().cpu()
            save_file(tensors, str(tmp / FILES["head"]))
            files["head"] = FILES["head"]
        meta["files"] = files
        meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta.update(dict(extra or {}))
        (tmp / ARTIFACT_MANIFEST).write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n")
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
            output_dir.rename(old)
            tmp.rename(output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def artifact_size(artifact_dir: str | os.PathLike) -> int:
    """Total bytes of the files in an artifact folder."""
    return sum(f.stat().st_size for f in Path(artifact_dir).rglob("*") if f.is_file())
