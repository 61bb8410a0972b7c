"""API keys with ``read`` and ``write`` scopes, from a file or ``$PIE_SERVE_KEYS``; constant-time checks; never logged.

Format (file lines or comma-separated in the variable): ``SCOPE:KEY``, e.g. ``read:r-3f9...`` and
``write:w-a71...``; a write key may also read. Blank lines and ``#`` comments are ignored.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from pie_retriever.errors import ConfigError
from pie_retriever.service.config import KEYS_ENV, keys_source

SCOPES = {"read": "search, few-shot prompts, listing and metrics", "write": "adding and deleting demonstrations, reload (and read)"}
MIN_KEY_CHARS = 16


class KeyRing:
    """The configured keys. ``scope_of(key)`` compares against every key in constant time."""

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        self._entries = [(scope, key.encode()) for scope, key in entries]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:  # never the keys themselves
        return f"KeyRing({len(self._entries)} keys)"

    def scope_of(self, presented: str | None) -> str | None:
        """``"write"``, ``"read"`` or None. Every key is compared (no early exit), each with ``hmac.compare_digest``."""
        if presented is None:
            return None
        given = presented.encode()
        found = None
        for scope, key in self._entries:
            if hmac.compare_digest(given, key) and (found is None or scope == "write"):
                found = scope
        return found

    def allows(self, presented: str | None, needed: str) -> bool:
        scope = self.scope_of(presented)
        return scope == "write" or (scope == "read" and needed == "read")


def parse_keys(text: str, where: str) -> list[tuple[str, str]]:
    entries = []
    for n, raw in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        scope, sep, key = line.partition(":")
        scope, key = scope.strip(), key.strip()
        if not sep or scope not in SCOPES:
            msg = f"{where}, entry {n}: expected SCOPE:KEY with SCOPE one of {sorted(SCOPES)} (the key is not shown)."
            raise ConfigError(msg)
        if len(key) < MIN_KEY_CHARS:
            msg = f"{where}, entry {n}: a key must have at least {MIN_KEY_CHARS} characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)."
            raise ConfigError(msg)
        entries.append((scope, key))
    return entries


def load_keys(keys_file: str | None = None) -> KeyRing:
    """Keys from ``keys_file`` (or ``$PIE_SERVE_KEYS_FILE``) plus ``$PIE_SERVE_KEYS``; empty when neither is set."""
    entries: list[tuple[str, str]] = []
    source = keys_source(keys_file)
    if source:
        path = Path(source).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"Cannot read the keys file {path} ({exc.strerror}); give a file with SCOPE:KEY lines."
            raise ConfigError(msg) from exc
        entries += parse_keys(text, f"keys file {path}")
    if os.environ.get(KEYS_ENV):
        entries += parse_keys(os.environ[KEYS_ENV], f"${KEYS_ENV}")
    return KeyRing(entries)
