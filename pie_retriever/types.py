"""Plain data types shared by every stage: a demonstration and a retrieval hit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pie_retriever.errors import InvalidDemonstrationError

_FIELDS = ("id", "instruction", "input", "output", "metadata")
#: The demonstration fields that can be embedded (``embed_fields=``), joined by newlines.
EMBED_FIELDS = ("instruction", "input", "output")


def check_embed_fields(embed_fields: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A non-empty tuple of ``EMBED_FIELDS`` members (a single name is accepted)."""
    from pie_retriever.errors import ConfigError

    fields = tuple([embed_fields] if isinstance(embed_fields, str) else embed_fields)
    if not fields or any(f not in EMBED_FIELDS for f in fields):
        msg = f"embed_fields must be a non-empty subset of {EMBED_FIELDS}, got {fields!r}."
        raise ConfigError(msg)
    return fields


def fresh_id(n: int, taken) -> str:
    """The first ``demo-<m>`` with ``m >= n`` that is not in ``taken`` (ids generated for demonstrations without one)."""
    while f"demo-{n}" in taken:
        n += 1
    return f"demo-{n}"


@dataclass
class Demonstration:
    """One few-shot example: an instruction, optional input context, and its output.

    ``id`` is assigned by the retriever when left as ``None``. ``metadata`` holds
    anything else (a task label, a source, ...) and is what ``filter=`` matches on.
    """

    instruction: str
    input: str = ""
    output: str = ""
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str):
            msg = (
                f"Demonstration.instruction must be a string, got {type(self.instruction).__name__}"
                f" ({self.instruction!r:.60}). Every demonstration needs a text instruction."
            )
            raise InvalidDemonstrationError(msg)
        if not self.instruction.strip():
            msg = "Demonstration.instruction is empty. Every demonstration needs a non-empty instruction."
            raise InvalidDemonstrationError(msg)
        for name in ("input", "output"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, "")
            elif not isinstance(value, str):
                msg = f"Demonstration.{name} must be a string or None, got {type(value).__name__} ({value!r:.60})."
                raise InvalidDemonstrationError(msg)
        if self.id is not None:
            if isinstance(self.id, int) and not isinstance(self.id, bool):
                self.id = str(self.id)
            if not isinstance(self.id, str) or not self.id:
                msg = f"Demonstration.id must be a non-empty string or None, got {self.id!r}."
                raise InvalidDemonstrationError(msg)
        if self.metadata is None:
            self.metadata = {}
        if not isinstance(self.metadata, dict):
            msg = f"Demonstration.metadata must be a dict, got {type(self.metadata).__name__}."
            raise InvalidDemonstrationError(msg)

    @classmethod
    def from_any(cls, obj: Demonstration | Mapping[str, Any] | str) -> Demonstration:
        """Build from a Demonstration, a dict ``{instruction, input?, output?, id?, metadata?}`` or a string.

        Unknown dict keys are kept in ``metadata`` so no information is lost.
        """
        if isinstance(obj, Demonstration):
            return obj
        if isinstance(obj, str):
            return cls(instruction=obj)
        if not isinstance(obj, Mapping):
            msg = (
                f"Cannot make a Demonstration from {type(obj).__name__}; pass a Demonstration, a string, or a dict "
                "with an 'instruction' key (and optional 'input', 'output', 'id', 'metadata')."
            )
            raise InvalidDemonstrationError(msg)
        if "instruction" not in obj:
            msg = f"Demonstration dict has no 'instruction' key (keys: {sorted(obj)}). Add the instruction text."
            raise InvalidDemonstrationError(msg)
        raw_meta = obj.get("metadata") or {}
        if not isinstance(raw_meta, Mapping):
            msg = f"Demonstration metadata must be a dict, got {type(raw_meta).__name__} ({raw_meta!r:.60})."
            raise InvalidDemonstrationError(msg)
        metadata = dict(raw_meta)
        for key, value in obj.items():
            if key not in _FIELDS:
                metadata.setdefault(key, value)
        raw_id = obj.get("id")
        return cls(
            instruction=obj["instruction"],
            input=obj.get("input") or "",
            output=obj.get("output") or "",
            id=None if raw_id is None else raw_id,
            metadata=metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "metadata": dict(self.metadata),
        }

    def text(self, fields: tuple[str, ...] = ("instruction",)) -> str:
        """The text that gets embedded: the chosen fields joined by newlines (empty ones skipped)."""
        parts = [getattr(self, f) for f in fields]
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Hit:
    """One retrieved demonstration with its similarity score (cosine) and 0-based rank."""

    demonstration: Demonstration
    score: float
    rank: int

    @property
    def id(self) -> str:
        return self.demonstration.id  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """The ``search --json`` shape: rank, score, id, instruction, input, output, metadata."""
        d = self.demonstration
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "id": d.id,
            "instruction": d.instruction,
            "input": d.input,
            "output": d.output,
            "metadata": dict(d.metadata),
        }


SearchResults = list  # list[Hit]; kept as a name for readability in signatures


def check_storable(demo: Demonstration, where: str) -> None:
    """Raise InvalidDemonstrationError (naming ``where``) unless ``demo`` can be saved: UTF-8 text, JSON metadata."""
    import json

    for name in ("id", "instruction", "input", "output"):
        value = getattr(demo, name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                msg = f"{where}: its {name} is not valid Unicode text ({exc.reason} at position {exc.start}); fix the text."
                raise InvalidDemonstrationError(msg) from None
    try:
        json.dumps(demo.metadata, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        msg = (f"{where}: its metadata cannot be saved as JSON (strict) ({type(exc).__name__}: {str(exc)[:120]}). "
               "Use strings, finite numbers, booleans, None, lists and dicts with string keys (NaN and infinity are "
               "not JSON: use None for a missing value).")
        raise InvalidDemonstrationError(msg) from None
    bad = [k for k in demo.metadata if not isinstance(k, str)]
    if bad:
        msg = f"{where}: metadata keys must be strings, got {bad[:3]!r}."
        raise InvalidDemonstrationError(msg)
