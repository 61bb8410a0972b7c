"""Record shapes of pool files beyond ``{instruction, input?, output?}``: chat messages, CSV and Parquet rows,
and a field mapping for any other JSON shape.

- **Chat** (``{"messages": [{"role", "content"}, ...]}``, the usual fine-tuning format): the last assistant turn is
  the ``output``; the user turn before it is the instruction, split at its first blank line into
  ``instruction`` and ``input`` ("Summarise this:\\n\\n<passage>"); a system prompt is kept in
  ``metadata["system"]`` and earlier turns in ``metadata["history"]``. Other keys of the record stay.
- **CSV** (``.csv``, header row) and **Parquet** (``.parquet``/``.pq``, needs ``pyarrow``): one row per
  demonstration, column names as the keys; an empty cell is a missing value.
- **Field mapping** (:class:`FieldMap`, the CLI's ``--instruction-field``/``--input-field``/``--output-field``/
  ``--task-field``/``--id-field``): which key holds each field; the task goes to ``metadata["task"]``. A dotted
  name reaches into nested objects (``meta.category``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pie_retriever.errors import PoolFormatError

__all__ = ["FieldMap", "TABLE_SUFFIXES", "add_field_arguments", "field_map_from_args", "from_chat", "is_chat", "map_record", "read_table"]

#: File suffixes read as tables (one demonstration per row).
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass(frozen=True)
class FieldMap:
    """Which key of a record holds each demonstration field (``None``: the usual name)."""

    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    task: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        for name in ("instruction", "input", "output", "task", "id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                msg = f"FieldMap.{name} must be a non-empty key name, got {value!r}."
                raise PoolFormatError(msg)

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) is None for n in ("instruction", "input", "output", "task", "id"))


def _get(obj: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    if key in obj:
        return True, obj[key]
    cur: Any = obj
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def map_record(obj: Mapping[str, Any], fields: FieldMap, where: str) -> dict[str, Any]:
    """``obj`` with the mapped keys renamed to ``instruction``/``input``/``output``/``id`` and the task in
    ``metadata["task"]``; a mapped key the record lacks is an error naming the keys it has."""
    out = dict(obj)
    for name in ("instruction", "input", "output", "id"):
        key = getattr(fields, name)
        if key is None or key == name:
            continue
        found, value = _get(obj, key)
        if not found:
            if name == "instruction":
                msg = f"{where}: no field {key!r} (--instruction-field) in this record; keys seen: {sorted(obj)}."
                raise PoolFormatError(msg)
            continue
        out.pop(key, None)
        out[name] = value
    if fields.task is not None:
        found, value = _get(obj, fields.task)
        if not found:
            msg = f"{where}: no field {fields.task!r} (--task-field) in this record; keys seen: {sorted(obj)}."
            raise PoolFormatError(msg)
        meta = dict(out.get("metadata") or {}) if isinstance(out.get("metadata") or {}, Mapping) else {}
        meta["task"] = value
        out.pop(fields.task, None)
        out["metadata"] = meta
    return out


def is_chat(obj: Any) -> bool:
    """A record in chat format: a ``messages`` list of ``{role, content}`` objects and no ``instruction``."""
    messages = obj.get("messages") if isinstance(obj, Mapping) else None
    return (isinstance(messages, list) and bool(messages) and "instruction" not in obj
            and all(isinstance(m, Mapping) and "role" in m for m in messages))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text")
    return "" if content is None else str(content)


def from_chat(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A chat record as a demonstration dict (see the module docstring)."""
    messages = list(obj["messages"])
    roles = [str(m.get("role")) for m in messages]
    unknown = sorted(set(roles) - _ROLES)
    if unknown:
        msg = f"{where}: chat message role(s) {unknown} are not one of {sorted(_ROLES)}."
        raise PoolFormatError(msg)
    last_assistant = max((i for i, r in enumerate(roles) if r == "assistant"), default=None)
    end = len(messages) if last_assistant is None else last_assistant
    last_user = max((i for i, r in enumerate(roles[:end]) if r == "user"), default=None)
    if last_user is None:
        msg = f"{where}: the chat record has no user message (roles seen: {roles}); a demonstration needs one."
        raise PoolFormatError(msg)
    head, sep, rest = _text(messages[last_user].get("content")).strip().partition("\n\n")
    out = {k: v for k, v in obj.items() if k != "messages"}
    out["instruction"], out["input"] = head.strip(), rest.strip() if sep else ""
    out["output"] = _text(messages[last_assistant].get("content")) if last_assistant is not None else ""
    meta = dict(obj.get("metadata") or {}) if isinstance(obj.get("metadata") or {}, Mapping) else {}
    system = [_text(m.get("content")) for m in messages[:last_user] if m.get("role") in ("system", "developer")]
    if system:
        meta["system"] = "\n\n".join(system)
    history = [{"role": m.get("role"), "content": _text(m.get("content"))} for m in messages[:last_user]
               if m.get("role") not in ("system", "developer")]
    if history:
        meta["history"] = history
    out["metadata"] = meta
    return out


def read_table(path: Path, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a CSV or Parquet file as ``(where, record)``; empty cells are dropped (missing values)."""
    kind = TABLE_SUFFIXES[path.suffix.lower()]
    if kind == "csv":
        try:
            reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
            rows = [(f"{path}, line {reader.line_num}", dict(r)) for r in reader]
        except (csv.Error, UnicodeDecodeError) as exc:
            msg = f"{path} is not a readable UTF-8 CSV file ({exc})."
            raise PoolFormatError(msg) from exc
        if rows and None in rows[0][1]:
            msg = f"{path}: a row has more cells than the header has columns ({reader.fieldnames})."
            raise PoolFormatError(msg)
    else:
        from pie_retriever.errors import require

        pq = require("pyarrow.parquet", "parquet", f"Reading the Parquet pool {path}")
        try:
            table = pq.read_table(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises its own ArrowInvalid and friends
            msg = f"{path} is not a readable Parquet file ({exc})."
            raise PoolFormatError(msg) from exc
        rows = [(f"{path}, row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    return [(where, {k: v for k, v in r.items() if v is not None and v != ""}) for where, r in rows]


def add_field_arguments(parser: Any) -> None:
    """The field-mapping flags of every command that reads a pool (``index``, ``add``)."""
    group = parser.add_argument_group("pool fields", "for JSON/CSV/Parquet records with other key names (chat-format "
                                      "{\"messages\": [...]} records need none); a dotted name reaches into nested objects")
    for name, example in (("instruction", "prompt"), ("input", "context"), ("output", "completion"), ("task", "category"), ("id", "uid")):
        where = "metadata.task" if name == "task" else name
        group.add_argument(f"--{name}-field", default=None, metavar="KEY", help=f"the key that holds {where} (e.g. {example})")


def field_map_from_args(args: Any) -> FieldMap | None:
    """The :class:`FieldMap` of :func:`add_field_arguments`' flags, or ``None`` when none was given."""
    fields = FieldMap(**{n: getattr(args, f"{n}_field", None) for n in ("instruction", "input", "output", "task", "id")})
    return None if fields.empty else fields
