"""Save and load a :class:`~pie_retriever.retrieval.retriever.PIERetriever` as a folder with a manifest (no pickle).

Layout: ``manifest.json`` (format, versions, encoder config + fingerprint, dim, metric, index kind and
options, embed fields, count, next label, sha256 of every file), the index's own files (``index.faiss``
[+ ``deleted.npy``] or ``vectors.npy`` + ``ids.npy``) and ``demonstrations.jsonl`` (one demonstration per
line with its ``_label``); with the dense content scorer also ``content_vectors.npy`` + ``content_labels.npy``
(the manifest's ``content`` entry records the content weight and scorer; see :mod:`pie_retriever.retrieval.content`).

Saving: the snapshot is taken under the retriever's read lock and written into a temporary sibling
folder ``.NAME.tmp-<pid>-<hex>``; then, holding an exclusive ``fcntl.flock`` on the parent folder (so
across processes), the old folder is renamed to ``.NAME.old-<hex>``, the new one into place, and the old
one is removed. A crash between the two renames leaves the previous index in the backup, which the next
load or save restores. Leftovers of dead savers are removed by the next save or load.

Loading: under a shared lock on the same folder, each file named by the manifest is opened once (never
through a symlink, never outside the folder), read into memory, hashed, and parsed from those bytes;
the manifest and the data are validated (see :mod:`pie_retriever.retrieval.manifest`) before anything is used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from pie_retriever._util import apply_default_permissions, library_versions
from pie_retriever.errors import EncoderMismatchError, IndexLoadError, IndexSaveError
from pie_retriever.retrieval.manifest import (
    DEMOS_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    parse_demonstrations,
    validate_data,
    validate_manifest,
)

logger = logging.getLogger(__name__)

_MANIFEST_PACKAGES = ("pie-retriever", "numpy", "faiss-cpu", "torch", "transformers")

__all__ = ["DEMOS_FILE", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "check_save_target", "load_retriever", "save_retriever"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- locking and leftovers -----------------------------------------------------------------------------
@contextlib.contextmanager
def _folder_lock(target: Path, exclusive: bool, *, required: bool) -> Iterator[bool]:
    """Hold ``flock`` on the folder that contains ``target`` (exclusive to swap or recover, shared to read).

    Locking the parent folder itself leaves no lock file behind. Yields False when the folder cannot be
    opened and ``required`` is False.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield False
        return
    try:
        fd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if required:
            msg = f"Cannot open {target.parent} to lock it ({exc.strerror})."
            raise IndexLoadError(msg) from exc
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cleanup(target: Path, keep: Path | None = None) -> None:
    """Remove leftovers of dead savers. Call with the exclusive lock held (no save is between its renames)."""
    for p in target.parent.glob(f".{target.name}.*"):
        if p == keep or not p.is_dir() or p.is_symlink():
            continue
        kind, _, rest = p.name[len(target.name) + 2:].partition("-")
        stale = kind == "trash" or (kind == "old" and target.exists())
        if kind == "tmp":
            pid = rest.partition("-")[0]
            stale = pid.isdigit() and not _pid_alive(int(pid))
        if stale:
            logger.info("Removing leftover %s of an interrupted save", p)
            shutil.rmtree(p, ignore_errors=True)


def _recover(target: Path) -> None:
    """If a save died between its two renames, put the newest complete backup back. Exclusive lock held."""
    if target.exists():
        return
    backups = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for backup in backups:
        if (backup / MANIFEST).is_file() and not backup.is_symlink():
            logger.warning("Index %s is missing but an interrupted save left %s; restoring it.", target, backup)
            os.rename(backup, target)
            return


# -- save ----------------------------------------------------------------------------------------------
def _check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        msg = f"{target} exists and is not a folder; refusing to overwrite it. Choose another path."
        raise IndexLoadError(msg)
    if not target.exists():
        return
    manifest = target / MANIFEST
    if manifest.is_file() and not manifest.is_symlink():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
            found = None
        if found == FORMAT_NAME:
            return
    if any(target.iterdir()):
        msg = (f"{target} exists and is not a pie_retriever index; refusing to overwrite it (it has no {MANIFEST} of "
               f"format {FORMAT_NAME!r}). Choose a new or empty folder.")
        raise IndexLoadError(msg)


def check_save_target(path: str | os.PathLike) -> Path:
    """Check, before any work, that ``path`` can receive an index: a new or empty folder or an index, whose
    parent can be created and written. Returns the absolute path; raises IndexLoadError saying what is wrong."""
    target = Path(path).expanduser().absolute()
    _check_target(target)
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        msg = f"Cannot save to {target}: {parent} is a file, not a folder."
        raise IndexLoadError(msg)
    try:
        probe = Path(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent))
    except OSError as exc:
        msg = f"Cannot save to {target}: {parent} is not writable ({exc.strerror})."
        raise IndexLoadError(msg) from exc
    probe.rmdir()
    return target


def _take_snapshot(retriever: Any) -> tuple[dict[str, bytes], dict[int, Any], int, dict[str, Any]]:
    """Copy, under the read lock, what a save writes: index files (bytes), demonstrations, next label, content.

    Only in-memory copies happen under the lock (a writer waiting behind a saver would hold up every new
    reader of the phase-fair lock); serialising the demonstrations and the disk writes come after it."""
    with retriever.snapshot() as (demos, next_label):
        files = dict(retriever.index.to_files())
        index_entry = {"kind": retriever.index.kind, "options": retriever.index.options()}
        content, content_files = retriever._content_state(list(demos))
    files.update(content_files)
    return files, demos, next_label, {"index": index_entry, "content": content}


def _write_snapshot(retriever: Any, folder: Path) -> None:
    """Write the index files, the demonstrations and the manifest of ``retriever`` into ``folder``."""
    files, demos, next_label, state = _take_snapshot(retriever)
    lines = []
    for label, demo in demos.items():
        row = demo.to_dict()
        row["_label"] = label
        lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    files[DEMOS_FILE] = "".join(lines).encode("utf-8")
    for name, data in files.items():
        _write_file(folder / name, data)
    encoder = retriever.encoder
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_versions": library_versions(_MANIFEST_PACKAGES),
        "encoder": {**encoder.config(), "fingerprint": encoder.fingerprint},
        "dim": int(encoder.dim),
        "metric": "inner_product",
        "normalized": True,
        "index": state["index"],
        "embed_fields": list(retriever.embed_fields),
        "dedupe": retriever.dedupe,
        "count": len(demos),
        "next_label": next_label,
        "files": {name: sha256_bytes(data) for name, data in files.items()},
        "content": state["content"],
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False)
    _write_file(folder / MANIFEST, text.encode("utf-8"))


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file of a new index folder; a full disk or an I/O error is an IndexSaveError."""
    try:
        with path.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        msg = (f"Cannot write {path} ({exc.strerror or exc}); the previous save, if any, is untouched. "
               "Free disk space or choose another folder.")
        raise IndexSaveError(msg) from exc


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_retriever(retriever: Any, path: str | os.PathLike) -> Path:
    """Write ``retriever`` (a :class:`~pie_retriever.retrieval.retriever.PIERetriever`) to the folder ``path``."""
    target = Path(path).expanduser().absolute()
    _check_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"Cannot create {target.parent} ({exc.strerror}); choose a folder you can write to."
        raise IndexLoadError(msg) from exc
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
    except OSError as exc:
        msg = f"Cannot write into {target.parent} ({exc.strerror}); choose a folder you can write to."
        raise IndexLoadError(msg) from exc
    try:
        _write_snapshot(retriever, tmp)
        with _folder_lock(target, exclusive=True, required=True):
            _cleanup(target, keep=tmp)
            _recover(target)
            _check_target(target)
            _swap(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _swap(tmp: Path, target: Path) -> None:
    backup = None
    if target.exists():
        apply_default_permissions(tmp, like=target)  # overwriting keeps the folder's and its files' modes
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, backup)
    os.rename(tmp, target)
    _fsync_dir(target.parent)
    if backup is not None:
        trash = target.parent / f".{target.name}.trash-{uuid.uuid4().hex[:8]}"
        os.rename(backup, trash)  # atomic: a half-deleted backup is never mistaken for a restorable one
        shutil.rmtree(trash, ignore_errors=True)


# -- load ----------------------------------------------------------------------------------------------
def _read_plain_file(folder_fd: int, name: str, folder: Path) -> bytes:
    """Read a file of the index folder: a regular file, opened without following symlinks."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder_fd)
    except FileNotFoundError:
        msg = f"{folder} is incomplete: {name} is missing. Rebuild the index."
        raise IndexLoadError(msg) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            msg = f"{folder}/{name} is a symbolic link; an index folder holds plain files only. Refusing to load it."
            raise IndexLoadError(msg) from None
        msg = f"Cannot read {folder}/{name} ({exc.strerror})."
        raise IndexLoadError(msg) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            msg = f"{folder}/{name} is not a regular file; refusing to load it."
            raise IndexLoadError(msg)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The validated manifest and the hash-checked bytes of every file it lists."""
    try:
        folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        msg = f"Cannot open the index folder {folder} ({exc.strerror})."
        raise IndexLoadError(msg) from exc
    try:
        try:
            raw = _read_plain_file(folder_fd, MANIFEST, folder)
        except IndexLoadError as exc:
            if "is missing" not in str(exc):
                raise
            msg = f"{folder} is not a pie_retriever index: it has no {MANIFEST}. Build one with PIERetriever.save() or `pie-retriever index`."
            raise IndexLoadError(msg) from None
        manifest = validate_manifest(raw, folder)
        files = {name: _read_plain_file(folder_fd, name, folder) for name in manifest["files"]}
    finally:
        os.close(folder_fd)
    for name, data in files.items():
        actual = sha256_bytes(data)
        if actual != manifest["files"][name]:
            msg = f"{folder / name} was modified after saving (its sha256 does not match the manifest); refusing to load it."
            raise IndexLoadError(msg)
    return manifest, files


def _check_encoder(encoder: Any, saved: dict[str, Any], fingerprint: str, dim: int, folder: Path, runtime: str | None = None) -> Any:
    """Build the encoder of the (already policy-checked) config ``saved`` unless one is given; check it matches.
    ``runtime`` (``encoder_runtime``): a transformer encoder may be served by its fp32 ONNX export
    (:mod:`pie_retriever.encoders.runtime`)."""
    from pie_retriever.encoders.base import encoder_from_config

    if encoder is None:
        from pie_retriever.encoders.runtime import query_encoder

        encoder = query_encoder(saved, fingerprint, runtime)
    if encoder is None:
        try:
            encoder = encoder_from_config(saved)
        except TypeError as exc:  # an encoder config with keys its class does not take
            msg = f"{folder / MANIFEST}: the encoder config {saved!r:.200} does not fit its encoder type ({exc})."
            raise IndexLoadError(msg) from exc
    if encoder.fingerprint != fingerprint:
        msg = (
            f"Encoder mismatch: the index at {folder} was built with encoder fingerprint {fingerprint} "
            f"({saved.get('type')} {saved.get('model', '')!s}), but the encoder given has {encoder.fingerprint} "
            f"({encoder.config().get('type')} {encoder.config().get('model', '')!s}). Use the same model, prompt and "
            "pooling, or rebuild the index."
        )
        raise EncoderMismatchError(msg)
    if encoder.dim != dim:
        msg = f"Encoder dim {encoder.dim} does not match the index dim {dim}."
        raise EncoderMismatchError(msg)
    return encoder


def load_retriever(cls: type, path: str | os.PathLike, encoder: Any = None, *, trust_remote_code: bool | None = None,
                   allow_remote: Any = None, encoder_runtime: str | None = None) -> Any:
    """Load a folder written by :func:`save_retriever` into a new ``cls`` instance.

    The folder is untrusted: its manifest is checked against the caller's :class:`~pie_retriever.retrieval.trust.LoadPolicy`
    (``trust_remote_code``, ``allow_remote``; ``None`` reads the caller's environment) before any encoder or
    index is built. ``encoder_runtime`` (``"auto"``/``"torch"``/``"onnx"``, ``None``: ``$PIE_ENCODER_RUNTIME``
    else auto) picks what encodes queries of a transformer-encoder index (:mod:`pie_retriever.encoders.runtime`)."""
    from pie_retriever.encoders.runtime import resolve_runtime
    from pie_retriever.index import index_from_files
    from pie_retriever.retrieval.trust import LoadPolicy, check_encoder_config, check_index_options

    policy = LoadPolicy.resolve(trust_remote_code, allow_remote)
    runtime = resolve_runtime(encoder_runtime)  # a bad value fails before any reading

    folder = Path(path).expanduser().absolute()
    if not folder.exists():
        with _folder_lock(folder, exclusive=True, required=False):
            _recover(folder)
    if folder.exists() and not folder.is_dir():
        msg = (f"{folder} is a file, not an index folder; give the folder written by PIERetriever.save() or "
               "`pie-retriever index -o FOLDER`.")
        raise IndexLoadError(msg)
    if not folder.is_dir():
        msg = f"Index folder {folder} does not exist. Build it first with `pie-retriever index POOL -o {folder}` or PIERetriever.save()."
        raise IndexLoadError(msg)
    with _folder_lock(folder, exclusive=False, required=False):
        manifest, files = _read_folder(folder)
    check_index_options(manifest["index"]["kind"], manifest["index"]["options"], policy, folder)
    saved = dict(manifest["encoder"])
    fingerprint = saved.pop("fingerprint")
    config = check_encoder_config(saved, policy, folder) if encoder is None else saved
    demos = parse_demonstrations(files.pop(DEMOS_FILE), manifest, folder)
    index = index_from_files(manifest["index"]["kind"], files, manifest["dim"], manifest["index"]["options"])
    validate_data(manifest, demos, index, folder)
    encoder = _check_encoder(encoder, config, fingerprint, manifest["dim"], folder, runtime)
    weight, scorer = _load_content(manifest, files, demos, folder)
    retriever = cls(encoder, index=index, embed_fields=manifest["embed_fields"], dedupe=manifest["dedupe"],
                    content_weight=weight, content_scorer=scorer)
    retriever._restore(demos, manifest["next_label"])
    _cleanup_quietly(folder)
    return retriever


def _load_content(manifest: dict[str, Any], files: dict[str, bytes], demos: dict, folder: Path) -> tuple[Any, Any]:
    """``(content_weight, content scorer)`` of a saved index; an index saved before content scoring gets the
    library defaults (a BM25 scorer is rebuilt from the demonstrations' texts)."""
    from pie_retriever.retrieval.content import CONTENT_FIELDS, DEFAULT_CONTENT_SCORER, content_from_config, make_content_scorer

    saved = manifest.get("content")
    if saved is not None and saved["scorer"] is None:
        return saved["weight"], None
    if saved is None:
        weight, scorer = None, make_content_scorer(DEFAULT_CONTENT_SCORER)
    else:
        weight, scorer = saved["weight"], content_from_config(saved, str(folder / MANIFEST))
    if scorer is not None:
        labels = list(demos)
        scorer.load(files, labels, [demos[label].text(CONTENT_FIELDS) for label in labels])
    return weight, scorer


def _cleanup_quietly(folder: Path) -> None:
    """Remove dead savers' leftovers after a load, if the lock can be had at once and the folder is writable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return
    if not any(True for _ in folder.parent.glob(f".{folder.name}.*")) or not os.access(folder.parent, os.W_OK):
        return
    fd = os.open(folder.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _cleanup(folder)
    except OSError:
        pass
    finally:
        os.close(fd)
