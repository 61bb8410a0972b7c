"""Metadata filters: ``{key: value or [values]}`` (every key must match) or a predicate on a Demonstration.

A filter is checked once (:func:`compile_filter`) before any search, so a malformed one fails fast with
a message that says what is accepted; index backends that can push filters down (a database) read the
normalised :class:`MetadataFilter`.

Values match **by type**: the integer ``1`` matches ``1`` (and ``1.0``) but not the string ``"1"`` nor ``True``;
``True`` matches only booleans, ``None`` only ``None`` (see :func:`value_key`). A retriever answers a dict filter
from :class:`MetadataColumns`, a column index ``key -> value -> labels`` kept in step with adds and deletes, so a
filtered search costs a few array operations, not one Python call per demonstration.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from pie_retriever.errors import ConfigError
from pie_retriever.types import Demonstration

FilterSpec = Union[Mapping[str, Any], Callable[[Demonstration], bool], None]
_SCALARS = (str, int, float, bool, type(None))
_HELP = ("filter must be a non-empty dict {metadata_key: value or [values]} (values: strings, numbers, booleans "
         "or None) or a callable(Demonstration) -> bool")


@dataclass(frozen=True)
class MetadataFilter:
    """A validated dict filter: ``wanted[key]`` is the frozenset of accepted values."""

    wanted: Mapping[str, frozenset]

    def keys(self) -> set[str]:
        return set(self.wanted)

    def __call__(self, demo: Demonstration) -> bool:
        for key, values in self.wanted.items():
            got = value_key(demo.metadata.get(key, _MISSING))
            if got is None or got not in {value_key(v) for v in values}:
                return False
        return True

    def describe(self) -> str:
        """The filter as ``key=value|value, key=value`` with each value's JSON spelling (for messages)."""
        import json

        def spell(values: frozenset) -> str:
            shown = {json.dumps(v) for v in values}
            # the command line's KEY=VALUE sends "1" and 1 together: show it once, as typed
            return "|".join(sorted(v for v in shown if not (v.startswith('"') and v[1:-1] in shown)))

        return ", ".join(f"{key}={spell(values)}" for key, values in self.wanted.items())


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def value_key(value: Any) -> tuple[str, Any] | None:
    """The typed identity a filter matches on: ``("bool", v)``, ``("num", v)`` (ints and floats, so 1 == 1.0),
    ``("str", v)``, ``("null", None)``; None for what no filter can name (a list, a dict, a missing key)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", value)
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("null", None)
    return None


def _check_value(key: str, value: Any) -> Any:
    if not isinstance(value, _SCALARS):
        msg = f"{_HELP}; the value for {key!r} is a {type(value).__name__} ({value!r:.60})."
        raise ConfigError(msg)
    if isinstance(value, float) and math.isnan(value):
        msg = f"{_HELP}; the value for {key!r} is NaN, which never equals anything."
        raise ConfigError(msg)
    return value


def compile_filter(spec: FilterSpec) -> MetadataFilter | Callable[[Demonstration], bool] | None:
    """Validate a filter spec; returns ``None``, the predicate as given, or a :class:`MetadataFilter`."""
    if spec is None:
        return None
    if isinstance(spec, MetadataFilter) or (callable(spec) and not isinstance(spec, Mapping)):
        return spec
    if not isinstance(spec, Mapping) or not spec:
        msg = f"{_HELP}; got {type(spec).__name__} ({spec!r:.60})."
        raise ConfigError(msg)
    wanted: dict[str, frozenset] = {}
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            msg = f"{_HELP}; keys must be non-empty strings, got {key!r}."
            raise ConfigError(msg)
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            msg = f"{_HELP}; the list of values for {key!r} is empty, so nothing could match."
            raise ConfigError(msg)
        wanted[key] = frozenset(_check_value(key, v) for v in values)
    return MetadataFilter(wanted)


class MetadataColumns:
    """Column index of a pool's metadata: ``key -> value_key -> labels``, plus the labels holding each key.

    :meth:`sync` brings it up to date with a retriever's ``{label: Demonstration}`` (labels only grow, so new ones
    are indexed once; deleted ones are masked out by a live mask rebuilt in one numpy call). :meth:`allowed` then
    answers a :class:`MetadataFilter` with array operations. Thread-safe: readers may sync concurrently.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: tuple[int, int] | None = None
        self._seen = 0  # labels below this are indexed
        self._values: dict[str, dict[tuple[str, Any], list[int]]] = {}
        self._has_key: dict[str, list[int]] = {}
        self._arrays: dict[Any, np.ndarray] = {}
        self._live = np.zeros(0, dtype=bool)

    def sync(self, demos: Mapping[int, Demonstration], next_label: int) -> None:
        """Index labels added since the last call and rebuild the live mask when the pool changed. The caller holds
        the retriever's read lock, so ``demos`` does not change meanwhile; ``(next_label, len(demos))`` names the
        pool's state (adds raise the first, deletes lower the second)."""
        state = (int(next_label), len(demos))
        if state == self._state:
            return
        with self._lock:
            if state == self._state:
                return
            for label in range(self._seen, state[0]):
                demo = demos.get(label)
                if demo is not None:
                    self._index(label, demo.metadata)
            self._seen = max(self._seen, state[0])
            live = np.zeros(self._seen, dtype=bool)
            live[np.fromiter(demos.keys(), dtype=np.int64, count=len(demos))] = True
            self._live = live
            self._state = state

    def _index(self, label: int, metadata: Mapping[str, Any]) -> None:
        for key, value in metadata.items():
            self._has_key.setdefault(key, []).append(label)
            self._arrays.pop(key, None)
            vk = value_key(value)
            if vk is not None:
                self._values.setdefault(key, {}).setdefault(vk, []).append(label)
                self._arrays.pop((key, vk), None)

    def _array(self, cache_key: Any, labels: list[int]) -> np.ndarray:
        arr = self._arrays.get(cache_key)
        if arr is None:
            arr = self._arrays[cache_key] = np.asarray(labels, dtype=np.int64)
        return arr

    def keys(self) -> set[str]:
        """Metadata keys that at least one live demonstration has."""
        with self._lock:
            return {key for key, labels in self._has_key.items() if self._live[self._array(key, labels)].any()}

    def values(self, key: str) -> list[Any]:
        """The distinct values of ``key`` among live demonstrations (for messages), sorted by their JSON spelling."""
        import json

        with self._lock:
            found = [vk[1] for vk, labels in self._values.get(key, {}).items() if self._live[self._array((key, vk), labels)].any()]
        return sorted(found, key=lambda v: json.dumps(v))

    def allowed(self, flt: MetadataFilter) -> np.ndarray:
        """Sorted labels of the live demonstrations that ``flt`` accepts."""
        with self._lock:
            mask = self._live.copy()
            for key, values in flt.wanted.items():
                column = self._values.get(key, {})
                hit = np.zeros(len(mask), dtype=bool)
                for vk in {value_key(v) for v in values}:
                    if vk in column:
                        hit[self._array((key, vk), column[vk])] = True
                mask &= hit
            return np.flatnonzero(mask).astype(np.int64)

    def explain(self, flt: MetadataFilter) -> str:
        """One line saying why ``flt`` passes no demonstration (a value absent from the pool, or no combination)."""
        for key, values in flt.wanted.items():
            present = self.values(key)
            wanted = {value_key(v) for v in values}
            if not wanted & {value_key(v) for v in present}:
                import json

                shown = ", ".join(json.dumps(v) for v in present[:10]) + (", ..." if len(present) > 10 else "")
                return (f"No demonstration passes the filter {flt.describe()}: metadata {key!r} takes the values {shown or 'none'} "
                        "in this pool (values match by type: 1 is not \"1\"; on the command line use --filter-json "
                        f"'{{\"{key}\": ...}}' for an exact type).")
        return f"No demonstration passes the filter {flt.describe()}: each value occurs, but no demonstration has all of them at once."
