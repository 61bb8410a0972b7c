"""Write trained artifacts (the format is described and read in :mod:`pie_retriever.encoders.artifact`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from pie_retriever.encoders.artifact import (
    ARTIFACT_MANIFEST,
    ARTIFACT_TYPES,
    FILES,
    FORMAT_NAME,
    FORMAT_VERSION,
    PEFT_CONFIG,
    PEFT_FILE,
    PEFT_PREFIX,
    read_manifest,
)
from pie_retriever.errors import ArtifactError

__all__ = ["ARTIFACT_TYPES", "ArtifactError", "artifact_size", "peft_config", "read_manifest", "save_artifact"]


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

    from pie_retriever.encoders.prompts import prompt_name, resolve_prompt

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
        meta: dict[str, Any] = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "base": base,
            "prompt": name if name != "custom" else template, "pooling": pooling,
            "type": "lora" if lora else ("delta" if delta else "head"),
        }
        if lora:
            if not lora_config or "scaling" not in lora_config:
                msg = "lora_config with a 'scaling' entry (alpha / r) is required with lora weights."
                raise ArtifactError(msg)
            meta["lora"] = dict(lora_config)
        meta["files"] = _write_tensors(tmp, store, lora=lora, delta=delta, head=head, lora_config=lora_config, base=base)
        meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta.update(dict(extra or {}))
        (tmp / ARTIFACT_MANIFEST).write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n")
        _move_into_place(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def peft_config(lora: Mapping[str, tuple[Any, Any]], lora_config: Mapping[str, Any], base: str) -> dict[str, Any]:
    """The ``adapter_config.json`` of a LoRA: what ``peft.LoraConfig`` needs to rebuild the adapter (rank, alpha from
    the scaling, the adapted module names); ``base_model_name_or_path`` is the artifact's base model spec."""
    r = int(lora_config.get("r") or next(iter(lora.values()))[0].shape[0])
    alpha = lora_config.get("alpha") or float(lora_config.get("scaling", 1.0)) * r
    return {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": base, "inference_mode": True,
            "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
            "target_modules": sorted({name.rsplit(".", 1)[-1] for name in lora}), "modules_to_save": None,
            "init_lora_weights": True, "use_rslora": False, "use_dora": False}


def _write_tensors(folder: Path, store: Any, *, lora: Mapping[str, tuple[Any, Any]] | None,
                   delta: Mapping[str, Any] | None, head: Any | None, lora_config: Mapping[str, Any] | None = None,
                   base: str = "") -> dict[str, str]:
    """Write the LoRA / delta / head safetensors files into ``folder``; returns ``{kind: file name}``."""
    from safetensors.torch import save_file

    def stored(t: Any) -> Any:
        return t.detach().to(store).contiguous().cpu()

    files: dict[str, str] = {}
    if lora:
        tensors = {}
        for mod, (a, b) in lora.items():
            tensors[f"{PEFT_PREFIX}{mod}.lora_A.weight"] = stored(a)
            tensors[f"{PEFT_PREFIX}{mod}.lora_B.weight"] = stored(b)
        save_file(tensors, str(folder / PEFT_FILE))
        (folder / PEFT_CONFIG).write_text(json.dumps(peft_config(lora, lora_config or {}, base), indent=2) + "\n")
        files["lora"] = PEFT_FILE
    if delta:
        save_file({k: stored(v) for k, v in delta.items()}, str(folder / FILES["delta"]))
        files["delta"] = FILES["delta"]
    if head is not None:
        tensors = {"weight": stored(head.weight)}
        if getattr(head, "bias", None) is not None:
            tensors["bias"] = stored(head.bias)
        save_file(tensors, str(folder / FILES["head"]))
        files["head"] = FILES["head"]
    return files


def _move_into_place(tmp: Path, output_dir: Path) -> None:
    """Make ``tmp`` readable and rename it to ``output_dir``, replacing an existing folder."""
    from pie_retriever._util import apply_default_permissions

    apply_default_permissions(tmp, like=output_dir)  # the umask's modes (0644/0755 under 022); a replaced folder's kept
    if output_dir.exists():
        old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        output_dir.rename(old)
        tmp.rename(output_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output_dir)


def artifact_size(artifact_dir: str | os.PathLike) -> int:
    """Total bytes of the files in an artifact folder."""
    return sum(f.stat().st_size for f in Path(artifact_dir).rglob("*") if f.is_file())
