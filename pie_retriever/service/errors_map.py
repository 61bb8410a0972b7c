"""Library errors → HTTP replies (status and a message that says what was wrong and how to fix it)."""

from __future__ import annotations

from pie_retriever.errors import (
    ConfigError,
    DuplicateIdError,
    EmptyPoolError,
    IndexSaveError,
    InvalidDemonstrationError,
    InvalidQueryError,
    PromptBudgetError,
    UnknownIdError,
)

#: (exception type, HTTP status); the first match wins.
STATUS = [
    (DuplicateIdError, 409),
    (EmptyPoolError, 409),
    (PromptBudgetError, 422),
    (InvalidDemonstrationError, 422),
    (InvalidQueryError, 422),
    (ConfigError, 422),
    (IndexSaveError, 507),
    (UnknownIdError, 404),
    (TypeError, 422),
    (ValueError, 422),
]


def status_of(exc: BaseException) -> int | None:
    for kind, code in STATUS:
        if isinstance(exc, kind):
            return code
    return None


def message_of(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__
