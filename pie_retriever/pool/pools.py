"""Read demonstration pools from files: JSONL, a JSON list, Alpaca-style JSON, IEB's label shape, chat-format
records, CSV and Parquet (record shapes and the field mapping: :mod:`pie_retriever.pool.formats`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from pie_retriever.errors import InvalidDemonstrationError, PoolFormatError
from pie_retriever.pool.formats import TABLE_SUFFIXES, FieldMap, from_chat, is_chat, map_record, read_table
from pie_retriever.types import Demonstration

POOL_FORMATS: dict[str, str] = {
    "jsonl": "one JSON object per line: {instruction, input?, output?, id?, metadata?}",
    "json": "a JSON list of such objects (Alpaca-style files are this shape) or of instruction strings",
    "ieb": "IEB's {label: {samples: [{category, instruction, input, output}]}}; the label goes to metadata.task",
    "chat": 'JSONL or a JSON list of {"messages": [{role, content}, ...]} (user turn → instruction/input, assistant → output)',
    "csv": "a CSV file with a header row (instruction, input, output, id, other columns → metadata)",
    "parquet": "a Parquet file with the same columns (needs pyarrow)",
}


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        msg = f"Pool file {path} does not exist."
        raise FileNotFoundError(msg)
    if path.is_dir():
        msg = f"{path} is a folder; pass a pool file (.jsonl, .json, .csv or .parquet)."
        raise PoolFormatError(msg)
    return path.read_bytes()


def _read_text(path: Path) -> str:
    raw = _read_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        msg = f"{path} is not UTF-8 (bad byte 0x{raw[exc.start]:02x} on line {line}). Re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`."
        raise PoolFormatError(msg) from exc


def _demo(obj: Any, where: str, fields: FieldMap | None = None) -> Demonstration:
    if isinstance(obj, str) and obj.strip():
        return Demonstration(instruction=obj)  # a bare instruction string (e.g. a list of instructions)
    if not isinstance(obj, dict):
        msg = f"{where}: expected a JSON object with an 'instruction' key, got {type(obj).__name__}."
        raise PoolFormatError(msg)
    record = from_chat(obj, where) if is_chat(obj) else obj
    if fields is not None and not fields.empty:
        record = map_record(record, fields, where)
    try:
        return Demonstration.from_any(record)
    except InvalidDemonstrationError as exc:
        hint = (" Or name the key that holds it: --instruction-field KEY (load_pool(..., fields={'instruction': KEY}))."
                if "no 'instruction' key" in str(exc) else "")
        msg = f"{where}: {exc}{hint}"
        raise PoolFormatError(msg) from exc


def _from_ieb(data: dict, path: Path) -> list[Demonstration]:
    from pie_retriever.pool.ieb import iter_samples

    demos = []
    for s in iter_samples(data, path):
        d = _demo(s.sample, f"{path}: label {s.label!r} sample {s.index}")
        d.metadata.setdefault("task", s.label)
        # IEB's `input` repeats the instruction before the context; keep only the context.
        if d.input.startswith(d.instruction):
            d.input = d.input[len(d.instruction):].strip()
        demos.append(d)
    return demos


def load_pool(path: str | os.PathLike, *, label_field: str | None = None,
              fields: FieldMap | Mapping[str, str] | None = None) -> list[Demonstration]:
    """Read a pool file. Errors name the file and, for JSONL and CSV, the line number, and the keys seen.

    ``label_field``: a top-level or metadata key holding the task label; copied to ``metadata['task']``.
    ``fields``: a :class:`~pie_retriever.pool.formats.FieldMap` (or ``{"instruction": "prompt", ...}``) naming the
    keys of other record shapes. Chat records (``{"messages": [...]}``) need no mapping.
    """
    path = Path(path).expanduser()
    fields = _field_map(fields)
    if path.suffix.lower() in TABLE_SUFFIXES:
        demos = [_demo(rec, where, fields) for where, rec in read_table(path, _read_bytes(path))]
        return _finish(demos, path, label_field)
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        msg = f"Pool file {path} is empty."
        raise PoolFormatError(msg)
    demos: list[Demonstration]
    if stripped[0] in "[{" and not (path.suffix == ".jsonl"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if stripped[0] == "{" and "\n" in stripped.strip():
                data = None  # maybe JSONL with a .json name; fall through
            else:
                msg = f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
                raise PoolFormatError(msg) from exc
        if isinstance(data, list):
            demos = [_demo(obj, f"{path}: item {i}", fields) for i, obj in enumerate(data)]
        elif isinstance(data, dict) and ("instruction" in data or is_chat(data) or (fields is not None and not fields.empty)):
            demos = [_demo(data, str(path), fields)]
        elif isinstance(data, dict) and data and all(isinstance(v, dict) and "samples" in v for v in data.values()):
            demos = _from_ieb(data, path)
        elif isinstance(data, dict):
            msg = (
                f"{path} holds a JSON object that is neither a demonstration nor IEB's {{label: {{samples: [...]}}}} shape "
                f"(top-level keys: {list(data)[:5]}). Supported formats: {'; '.join(POOL_FORMATS.values())}."
            )
            raise PoolFormatError(msg)
        elif data is None:
            demos = _parse_jsonl(text, path, fields)
        else:
            msg = f"{path} holds a JSON {type(data).__name__}; expected a list of demonstrations or one per line (JSONL)."
            raise PoolFormatError(msg)
    else:
        demos = _parse_jsonl(text, path, fields)
    return _finish(demos, path, label_field)


def _field_map(fields: FieldMap | Mapping[str, str] | None) -> FieldMap | None:
    if fields is None or isinstance(fields, FieldMap):
        return fields
    try:
        return FieldMap(**dict(fields))
    except TypeError as exc:
        msg = f"fields takes the keys instruction, input, output, task, id; got {sorted(fields)}."
        raise PoolFormatError(msg) from exc


def _finish(demos: list[Demonstration], path: Path, label_field: str | None) -> list[Demonstration]:
    if not demos:
        msg = f"Pool file {path} contains no demonstrations."
        raise PoolFormatError(msg)
    if label_field:
        for i, d in enumerate(demos):
            value = d.metadata.get(label_field)
            if value is None:
                msg = f"{path}: demonstration #{i} ({d.id or d.instruction[:40]!r}) has no label field {label_field!r}."
                raise PoolFormatError(msg)
            d.metadata["task"] = value
    return demos


def _parse_jsonl(text: str, path: Path, fields: FieldMap | None = None) -> list[Demonstration]:
    demos = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{path}, line {lineno}: malformed JSON ({exc.msg} at column {exc.colno}): {line[:80]!r}"
            raise PoolFormatError(msg) from exc
        demos.append(_demo(obj, f"{path}, line {lineno}", fields))
    return demos


def bundled_pool_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "demo_pool.jsonl"


def bundled_queries_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "demo_queries.jsonl"


def load_bundled_pool() -> list[Demonstration]:
    """The demonstration pool shipped with the package (tasks × topics, labelled in ``metadata['task']``)."""
    return load_pool(bundled_pool_path())


def load_bundled_queries() -> list[Demonstration]:
    """Held-out queries for the bundled pool, with gold outputs and ``metadata['task']``."""
    return load_pool(bundled_queries_path())
