"""The saved-index manifest: its schema, and validation of a loaded folder against it.

Nothing read from a folder is trusted: every field has a type and a range, file names must be plain
names inside the folder, counts, ids and labels must agree, and vectors must be finite. Each error
names the field or line that is wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from pie_retriever.errors import ConfigError, IndexLoadError, InvalidDemonstrationError
from pie_retriever.types import Demonstration, check_embed_fields

FORMAT_NAME = "pie-retriever-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEMOS_FILE = "demonstrations.jsonl"
MAX_DIM = 65_536
MAX_LABEL = 2**62
_KEYS = {"format", "format_version", "library_versions", "encoder", "dim", "metric", "normalized", "index",
         "embed_fields", "dedupe", "count", "next_label", "files", "content"}
_REQUIRED = _KEYS - {"library_versions", "normalized", "content"}  # indexes saved before content scoring have no "content"
#: The saved content scorer: ``{"weight", "scorer": None | "bm25" | "minilm", "fields", ...}`` (pie_retriever.retrieval.content)
_CONTENT_KEYS = {None: {"weight", "scorer"}, "bm25": {"weight", "scorer", "fields", "k1", "b", "stopwords", "files"},
                 "minilm": {"weight", "scorer", "fields", "encoder", "dim", "dtype", "files"}}
_CONTENT_FILES = {None: [], "bm25": [], "minilm": ["content_labels.npy", "content_vectors.npy"]}
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _fail(folder: Path, field: str, problem: str) -> IndexLoadError:
    return IndexLoadError(f"{folder / MANIFEST}: {field} {problem}; refusing to load it.")


def _int(m: dict, field: str, low: int, high: int, folder: Path) -> int:
    value = m.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(folder, field, f"must be an integer in [{low}, {high}], got {value!r:.60}")
    return value


def _parse_json(raw: bytes, folder: Path) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        msg = f"{folder / MANIFEST} is not valid JSON ({type(exc).__name__}: {str(exc)[:100]}); the folder is damaged. Rebuild the index."
        raise IndexLoadError(msg) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        msg = f"{folder / MANIFEST} is not a pie_retriever manifest (format={found!r:.60}, expected {FORMAT_NAME!r})."
        raise IndexLoadError(msg)
    if data.get("format_version") != FORMAT_VERSION:
        msg = (
            f"{folder} was saved with index format version {data.get('format_version')!r:.40}; this library reads "
            f"version {FORMAT_VERSION}. Rebuild the index with this version (`pie-retriever index`)."
        )
        raise IndexLoadError(msg)
    return data


def _check_files(m: dict, folder: Path) -> None:
    from pie_retriever.index import index_class

    files = m.get("files")
    if not isinstance(files, dict) or not files:
        raise _fail(folder, "files", "must map every file of the index to its sha256 (it is missing or empty)")
    for name, digest in files.items():
        if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", "..") or ".." in name:
            raise _fail(folder, "files", f"names {name!r:.80}, which is not a plain file name inside the folder")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _fail(folder, f"files[{name!r}]", "must be a 64-character lowercase sha256 hex digest")
    required, optional = index_class(m["index"]["kind"]).file_names(m["index"]["options"])
    required = [*required, DEMOS_FILE, *_CONTENT_FILES[(m.get("content") or {}).get("scorer")]]
    missing = sorted(set(required) - set(files))
    extra = sorted(set(files) - set(required) - set(optional))
    if missing or extra:
        raise _fail(folder, "files", f"must list {sorted(required)} (optional: {sorted(optional)}); missing {missing}, unexpected {extra}")


def _check_index(m: dict, folder: Path) -> None:
    from pie_retriever.index import INDEX_KINDS, index_class

    spec = m.get("index")
    if not isinstance(spec, dict) or set(spec) - {"kind", "options"} or spec.get("kind") not in INDEX_KINDS:
        raise _fail(folder, "index", f"must be {{'kind': one of {list(INDEX_KINDS)}, 'options': {{...}}}}, got {spec!r:.100}")
    try:
        spec["options"] = index_class(spec["kind"]).check_options(spec.get("options", {}), spec["kind"])
    except ConfigError as exc:
        raise _fail(folder, "index.options", f"are invalid: {exc}") from None


def _number(value: Any, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high


def _check_content(m: dict, folder: Path) -> None:
    """The optional ``content`` entry: weight in [0, 1], a known scorer, its own keys and files, sane numbers."""
    c = m.get("content")
    if c is None:
        return
    if not isinstance(c, dict) or c.get("scorer") not in _CONTENT_KEYS or set(c) != _CONTENT_KEYS[c.get("scorer")]:
        scorer = c.get("scorer") if isinstance(c, dict) else None
        raise _fail(folder, "content", f"must be an object with exactly the keys {sorted(_CONTENT_KEYS.get(scorer, _CONTENT_KEYS[None]))} "
                    f"(scorer one of {list(_CONTENT_KEYS)}), got {c!r:.120}")
    if not _number(c["weight"], 0.0, 1.0):
        raise _fail(folder, "content.weight", f"must be a number in [0, 1], got {c['weight']!r:.40}")
    if c["scorer"] is None:
        return
    if c["fields"] != ["instruction", "input"] or c["files"] != _CONTENT_FILES[c["scorer"]]:
        raise _fail(folder, "content", f"fields/files must be ['instruction', 'input'] / {_CONTENT_FILES[c['scorer']]}, "
                    f"got {c['fields']!r:.60} / {c['files']!r:.80}")
    if c["scorer"] == "bm25" and not (_number(c["k1"], 0.0, 100.0) and _number(c["b"], 0.0, 1.0) and c["stopwords"] == "en"):
        raise _fail(folder, "content", f"k1 must be in [0, 100], b in [0, 1] and stopwords 'en', got {c['k1']!r:.20}, {c['b']!r:.20}, {c['stopwords']!r:.20}")
    if c["scorer"] == "minilm":
        enc = c["encoder"]
        if not isinstance(enc, dict) or not isinstance(enc.get("type"), str) or not isinstance(enc.get("fingerprint"), str):
            raise _fail(folder, "content.encoder", "must be an object with string 'type' and 'fingerprint'")
        _int(c, "dim", 1, MAX_DIM, folder)
        if c["dtype"] != "float16":
            raise _fail(folder, "content.dtype", f"must be 'float16', got {c['dtype']!r:.20}")


def validate_manifest(raw: bytes, folder: Path) -> dict[str, Any]:
    """Parse the manifest's bytes and check every field; returns it with index options normalised."""
    m = _parse_json(raw, folder)
    unknown, missing = sorted(set(m) - _KEYS), sorted(_REQUIRED - set(m))
    if unknown or missing:
        raise _fail(folder, "the manifest", f"has unknown keys {unknown} / lacks keys {missing}")
    enc = m["encoder"]
    if not isinstance(enc, dict) or not isinstance(enc.get("type"), str) or not isinstance(enc.get("fingerprint"), str):
        raise _fail(folder, "encoder", "must be an object with string 'type' and 'fingerprint'")
    if any(not isinstance(k, str) for k in enc):
        raise _fail(folder, "encoder", "keys must be strings")
    _int(m, "dim", 1, MAX_DIM, folder)
    if m["metric"] != "inner_product" or m.get("normalized", True) is not True:
        raise _fail(folder, "metric", "must be 'inner_product' over normalized vectors")
    _check_index(m, folder)
    _check_content(m, folder)
    ef = m["embed_fields"]
    if not isinstance(ef, list) or not all(isinstance(f, str) for f in ef):
        raise _fail(folder, "embed_fields", f"must be a list of field names, got {ef!r:.80}")
    try:
        check_embed_fields(ef)
    except ValueError as exc:
        raise _fail(folder, "embed_fields", str(exc)) from None
    if not isinstance(m["dedupe"], bool):
        raise _fail(folder, "dedupe", "must be true or false")
    _int(m, "count", 0, MAX_LABEL, folder)
    _int(m, "next_label", 0, MAX_LABEL, folder)
    if "library_versions" in m and not isinstance(m["library_versions"], dict):
        raise _fail(folder, "library_versions", "must be an object")
    _check_files(m, folder)
    return m


def parse_demonstrations(raw: bytes, manifest: dict, folder: Path) -> dict[int, Demonstration]:
    """``{label: Demonstration}`` from ``demonstrations.jsonl``: unique labels below next_label, unique ids."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{folder / DEMOS_FILE} is not UTF-8 (byte {exc.start}); refusing to load it."
        raise IndexLoadError(msg) from None
    demos: dict[int, Demonstration] = {}
    ids: set[str] = set()
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    if lines == [""]:  # an empty pool was saved: the file has no line at all
        lines = []
    for lineno, line in enumerate(lines, start=1):
        where = f"{folder / DEMOS_FILE}, line {lineno}"
        label, demo = _parse_row(line, where, manifest["next_label"])
        if label in demos:
            raise IndexLoadError(f"{where}: label {label} appears twice; refusing to load it.")
        if demo.id in ids:
            raise IndexLoadError(f"{where}: demonstration id {demo.id!r} appears twice; refusing to load it.")
        demos[label] = demo
        ids.add(demo.id)
    return demos


def _parse_row(line: str, where: str, next_label: int) -> tuple[int, Demonstration]:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise IndexLoadError(f"{where}: not valid JSON ({type(exc).__name__}); refusing to load it.") from None
    if not isinstance(row, dict):
        raise IndexLoadError(f"{where}: expected a JSON object, got {type(row).__name__}; refusing to load it.")
    label = row.pop("_label", None)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < next_label:
        raise IndexLoadError(f"{where}: _label must be an integer in [0, next_label={next_label}), got {label!r:.40}; refusing to load it.")
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise IndexLoadError(f"{where}: every saved demonstration has a non-empty string id, got {row.get('id')!r:.40}.")
    if not isinstance(row.get("metadata", {}), dict):
        raise IndexLoadError(f"{where}: metadata must be an object.")
    try:
        return label, Demonstration.from_any(row)
    except (InvalidDemonstrationError, TypeError) as exc:
        raise IndexLoadError(f"{where}: {exc}") from None


def validate_data(manifest: dict, demos: dict[int, Demonstration], index: Any, folder: Path) -> None:
    """Counts agree, the index holds exactly the demonstrations' labels, and every vector is finite."""
    count = manifest["count"]
    if len(demos) != count or len(index) != count:
        msg = f"{folder} is inconsistent: manifest count {count}, {len(demos)} demonstrations, {len(index)} vectors."
        raise IndexLoadError(msg)
    ids = np.asarray(index.ids(), dtype=np.int64)
    if len(np.unique(ids)) != len(ids) or set(ids.tolist()) != set(demos):
        msg = f"{folder} is inconsistent: the index's vector ids do not match the demonstrations' labels (or repeat)."
        raise IndexLoadError(msg)
    for start in range(0, len(ids), 65_536):
        chunk = ids[start:start + 65_536]
        if not np.isfinite(index.reconstruct(chunk)).all():
            msg = f"{folder}: the index holds NaN or infinite vectors; refusing to load it. Rebuild the index."
            raise IndexLoadError(msg)
