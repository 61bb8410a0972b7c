"""Service configuration and request limits (``pie-retriever serve``): what is served, where, and how much a request may ask."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pie_retriever.errors import ConfigError

#: Request limits (the OpenAPI schema carries them, so clients and fuzzers see them too).
MAX_K = 100
MAX_QUERY_CHARS = 4096
MAX_BATCH = 64
MAX_DEMOS_PER_WRITE = 256
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB
#: Micro-batching: wait at most this long for more searches, and put at most this many queries in one batch.
BATCH_WINDOW_S = 0.002
BATCH_MAX_QUERIES = 64
DEFAULT_QUEUE = 256  # queries waiting; beyond it a search is shed with 503 + Retry-After

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class ServiceConfig:
    """What ``pie-retriever serve`` serves. ``indexes``: name → index folder, fixed at start."""

    indexes: dict[str, Path]
    host: str = "127.0.0.1"
    port: int = 8080
    keys_file: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    queue_size: int = DEFAULT_QUEUE
    batch_window: float = BATCH_WINDOW_S
    batch_max: int = BATCH_MAX_QUERIES
    cors_origins: list[str] = field(default_factory=list)
    tokenizer: str | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        if not self.indexes:
            msg = "Give at least one index folder to serve: pie-retriever serve DIR [NAME=DIR ...]."
            raise ConfigError(msg)
        for name in self.indexes:
            if not _NAME.match(name):
                msg = f"Index name {name!r} is not valid: use letters, digits, '_', '.', '-' (at most 64), e.g. pool=./pool.pie."
                raise ConfigError(msg)
        if not 0 < self.max_body <= 64 << 20:
            msg = f"max_body must be between 1 byte and 64 MiB, got {self.max_body}."
            raise ConfigError(msg)
        if not 1 <= self.queue_size <= 100_000 or not 1 <= self.batch_max <= 1024 or not 0 <= self.batch_window <= 0.1:
            msg = (f"queue_size must be in [1, 100000], batch_max in [1, 1024] and batch_window in [0, 0.1] s; got "
                   f"{self.queue_size}, {self.batch_max}, {self.batch_window}.")
            raise ConfigError(msg)


def parse_index_specs(specs: list[str]) -> dict[str, Path]:
    """``["./pool.pie", "tasks=/data/t.pie"]`` → ``{"pool.pie": Path, "tasks": Path}`` (a folder's name by default)."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            name, folder = Path(spec).name, spec
        path = Path(folder).expanduser()
        if not (path / "manifest.json").is_file():
            msg = f"{folder!r} is not a saved index folder (no manifest.json); build one with `pie-retriever index POOL -o DIR`."
            raise ConfigError(msg)
        if name in out:
            msg = f"Index name {name!r} is given twice; name them apart with NAME=DIR."
            raise ConfigError(msg)
        out[name] = path.resolve()
    return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, has_keys: bool) -> None:
    """Refuse a non-loopback address without keys: anyone on the network could read and write the pool."""
    if not is_loopback(host) and not has_keys:
        msg = (f"Refusing to bind {host} without API keys: anyone who can reach it could read and change the pool. "
               f"Give keys (--keys-file FILE or ${KEYS_ENV}), or bind 127.0.0.1.")
        raise ConfigError(msg)


KEYS_ENV = "PIE_SERVE_KEYS"
KEYS_FILE_ENV = "PIE_SERVE_KEYS_FILE"


def keys_source(keys_file: str | None) -> str | None:
    return keys_file or os.environ.get(KEYS_FILE_ENV) or None
