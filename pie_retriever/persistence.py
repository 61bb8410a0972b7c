"""Save and load a :class:`~pie_retriever.retriever.PIERetriever` as a folder with a manifest (no pickle).

Layout: ``manifest.json`` (format, versions, encoder config + fingerprint, dim, metric, index kind and
options, embed fields, count, next label, sha256 of every file), the index's own files (``index.faiss`` or
``vectors.npy`` + ``ids.npy``) and ``demonstrations.jsonl`` (one demonstration per line with its ``_label``).

A save writes into a temporary sibling folder and renames it into place; a crash between the two renames
leaves the previous index in a ``.NAME.old-*`` backup that the next load restores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ._util import library_versions
from .errors import EncoderMismatchError, IndexLoadError
from .types import Demonstration

logger = logging.getLogger(__name__)

FORMAT_NAME = "pie-retriever-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEMOS_FILE = "demonstrations.jsonl"
_MANIFEST_PACKAGES = ("pie-retriever", "numpy", "faiss-cpu", "torch", "transformers")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_snapshot(retriever: Any, folder: Path) -> None:
    """Write the index files, the demonstrations and the manifest of ``retriever`` into ``folder``."""
    demos, next_label = retriever._state()
    files = retriever.index.save(folder)
    with (folder / DEMOS_FILE).open("w", encoding="utf-8") as fh:
        for label, demo in demos.items():
            row = demo.to_dict()
            row["_label"] = label
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    files.append(DEMOS_FILE)
    encoder = retriever.encoder
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_versions": library_versions(_MANIFEST_PACKAGES),
        "encoder": {**encoder.config(), "fingerprint": encoder.fingerprint},
        "dim": int(encoder.dim),
        "metric": "inner_product",
        "normalized": True,
        "index": {"kind": retriever.index.kind, "options": retriever.index.options()},
        "embed_fields": list(retriever.embed_fields),
        "dedupe": retriever.dedupe,
        "count": len(demos),
        "next_label": next_label,
        "files": {name: sha256_file(folder / name) for name in files},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    for f in folder.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())


def save_retriever(retriever: Any, path: str | os.PathLike) -> Path:
    """Write ``retriever`` (a :class:`~pie_retriever.retriever.PIERetriever`) to the folder ``path`` atomically; refuse to replace anything that is not an index."""
    target = Path(path).expanduser().resolve()
    if target.exists() and not (target / MANIFEST).is_file():
        if not target.is_dir() or any(target.iterdir()):
            msg = f"{target} exists and is not a pie_retriever index; refusing to overwrite it. Choose another path."
            raise IndexLoadError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_snapshot(retriever, tmp)
        backup = None
        if target.exists():
            backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, backup)
        os.rename(tmp, target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(folder: Path) -> dict[str, Any]:
    """Parse and check the manifest of an index folder and the hashes of the files it lists."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        msg = f"{folder} is not a pie_retriever index: it has no {MANIFEST}. Build one with PIERetriever.save() or `pie-retriever index`."
        raise IndexLoadError(msg)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{manifest_path} is not valid JSON ({exc}); the folder is damaged. Rebuild the index."
        raise IndexLoadError(msg) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        msg = f"{manifest_path} is not a pie_retriever manifest (format={found!r}, expected {FORMAT_NAME!r})."
        raise IndexLoadError(msg)
    if manifest.get("format_version") != FORMAT_VERSION:
        msg = (
            f"{folder} was saved with index format version {manifest.get('format_version')!r}; this library reads "
            f"version {FORMAT_VERSION}. Rebuild the index with this version (`pie-retriever index`)."
        )
        raise IndexLoadError(msg)
    for name, digest in manifest.get("files", {}).items():
        f = folder / name
        if not f.is_file():
            msg = f"{folder} is incomplete: {name} is missing. Rebuild the index."
            raise IndexLoadError(msg)
        actual = sha256_file(f)
        if actual != digest:
            msg = f"{f} was modified after saving (sha256 {actual[:12]}…, manifest says {digest[:12]}…); refusing to load it."
            raise IndexLoadError(msg)
    return manifest


def _check_encoder(encoder: Any, manifest: dict[str, Any], folder: Path) -> Any:
    from .encoders.base import encoder_from_config

    saved = dict(manifest["encoder"])
    fingerprint = saved.pop("fingerprint")
    if encoder is None:
        encoder = encoder_from_config(saved)
    if encoder.fingerprint != fingerprint:
        msg = (
            f"Encoder mismatch: the index at {folder} was built with encoder fingerprint {fingerprint} "
            f"({saved.get('type')} {saved.get('model', '')!s}), but the encoder given has {encoder.fingerprint} "
            f"({encoder.config().get('type')} {encoder.config().get('model', '')!s}). Use the same model, prompt and "
            "pooling, or rebuild the index."
        )
        raise EncoderMismatchError(msg)
    if encoder.dim != manifest["dim"]:
        msg = f"Encoder dim {encoder.dim} does not match the index dim {manifest['dim']}."
        raise EncoderMismatchError(msg)
    return encoder


def _read_demonstrations(path: Path) -> dict[int, Demonstration]:
    demos: dict[int, Demonstration] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            label = int(row.pop("_label"))
            demos[label] = Demonstration.from_any(row)
    return demos


def load_retriever(cls: type, path: str | os.PathLike, encoder: Any = None) -> Any:
    """Load a folder written by :func:`save_retriever` into a new ``cls`` instance."""
    from .index import load_index

    folder = recover(Path(path).expanduser().resolve())
    manifest = read_manifest(folder)
    encoder = _check_encoder(encoder, manifest, folder)
    index = load_index(folder, manifest["index"]["kind"], manifest["dim"], manifest["index"].get("options", {}))
    retriever = cls(encoder, index=index, embed_fields=manifest["embed_fields"], dedupe=manifest.get("dedupe", False))
    demos = _read_demonstrations(folder / DEMOS_FILE)
    retriever._restore(demos, manifest["next_label"])
    if len(demos) != manifest["count"] or len(index) != manifest["count"]:
        msg = f"{folder} is inconsistent: manifest count {manifest['count']}, {len(demos)} demonstrations, {len(index)} vectors."
        raise IndexLoadError(msg)
    return retriever


def recover(folder: Path) -> Path:
    """If a save was interrupted between its two renames, the previous index sits in a backup folder."""
    if folder.exists():
        return folder
    backups = sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for backup in backups:
        if (backup / MANIFEST).is_file():
            logger.warning("Index %s is missing but an interrupted save left %s; restoring it.", folder, backup)
            os.rename(backup, folder)
            return folder
    msg = f"Index folder {folder} does not exist. Build it first with `pie-retriever index POOL -o {folder}` or PIERetriever.save()."
    raise IndexLoadError(msg)
