"""Metadata filters: ``{key: value or [values]}`` (every key must match) or a predicate on a Demonstration.

A filter is checked once (:func:`compile_filter`) before any search, so a malformed one fails fast with
a message that says what is accepted; index backends that can push filters down (a database) read the
normalised :class:`MetadataFilter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

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
            value = demo.metadata.get(key, _MISSING)
            try:
                if value not in values:
                    return False
            except TypeError:  # an unhashable metadata value (a list, a dict) matches nothing hashable
                return False
        return True


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


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
