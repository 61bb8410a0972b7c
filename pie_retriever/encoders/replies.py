"""Check an OpenAI-style ``/v1/embeddings`` reply before any of it is used (a server is untrusted input).

:func:`embeddings_from_reply` returns the ``(n, dim)`` float32 array in input order, or raises
:class:`~pie_retriever.errors.ServerError` naming the fault: not an object, no ``data`` list, a count that is
not the number of inputs, an ``index`` that is not an integer, out of range or repeated, an embedding that is
not a list of numbers, of another length than the others (or than ``dim``), with NaN/inf/None/overflowing
values, or all zeros (a vector with no direction cannot be normalised).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pie_retriever.errors import ServerError

__all__ = ["embeddings_from_reply"]


def _fail(url: str, what: str) -> ServerError:
    return ServerError(f"POST {url} returned a malformed embeddings reply: {what}. Is it an OpenAI-compatible "
                       "embeddings endpoint serving the expected model?", url=url)


def _order(rows: list[Any], n: int, url: str) -> list[int]:
    """The position of each row's ``index`` (every row must have one: an integer in [0, n), each once)."""
    seen: dict[int, int] = {}
    for pos, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _fail(url, f"data[{pos}] is a {type(row).__name__}, not an object")
        index = row.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise _fail(url, f"data[{pos}].index is {index!r:.40}, not an integer")
        if not 0 <= index < n:
            raise _fail(url, f"data[{pos}].index is {index}, outside [0, {n}) for {n} inputs")
        if index in seen:
            raise _fail(url, f"data[{pos}] and data[{seen[index]}] both have index {index}")
        seen[index] = pos
    return [seen[i] for i in range(n)]


def _vector(row: dict, pos: int, url: str) -> np.ndarray:
    values = row.get("embedding")
    if not isinstance(values, list) or not values:
        raise _fail(url, f"data[{pos}].embedding is {type(values).__name__}, not a non-empty list of numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        bad = next(v for v in values if not isinstance(v, (int, float)) or isinstance(v, bool))
        raise _fail(url, f"data[{pos}].embedding holds {bad!r:.40}, not a number")
    with np.errstate(over="ignore", invalid="ignore"):
        vector = np.asarray(values, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise _fail(url, f"data[{pos}].embedding holds NaN, infinity or a value beyond float32")
    if not np.any(vector):
        raise _fail(url, f"data[{pos}].embedding is all zeros")
    return vector


def embeddings_from_reply(answer: Any, n: int, url: str, dim: int | None = None) -> np.ndarray:
    """The validated ``(n, dim)`` float32 embeddings of a reply to ``n`` inputs, in input order."""
    if not isinstance(answer, dict):
        raise _fail(url, f"the reply is a {type(answer).__name__}, not a JSON object")
    rows = answer.get("data")
    if not isinstance(rows, list):
        raise _fail(url, f"'data' is {type(rows).__name__}, not a list")
    if len(rows) != n:
        raise _fail(url, f"{len(rows)} embeddings for {n} inputs")
    order = _order(rows, n, url)
    vectors = [_vector(rows[pos], pos, url) for pos in order]
    sizes = {len(v) for v in vectors}
    if len(sizes) > 1:
        raise _fail(url, f"embeddings of different lengths {sorted(sizes)[:4]}")
    size = sizes.pop()
    if dim is not None and size != dim:
        raise _fail(url, f"{size}-d embeddings where the model gave {dim}-d before (did the served model change?)")
    return np.stack(vectors)
