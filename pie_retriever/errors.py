"""Exception types. Each subclasses a built-in so ``except ValueError`` keeps working."""

from __future__ import annotations


class PIEError(Exception):
    """Base class of every error raised on purpose by pie_retriever."""


class InvalidDemonstrationError(PIEError, ValueError):
    """A demonstration is missing its instruction or has a field of the wrong type."""


class PoolFormatError(PIEError, ValueError):
    """A pool file cannot be read: malformed JSON/JSONL, wrong shape, or not UTF-8."""


class DuplicateIdError(PIEError, ValueError):
    """Two demonstrations share an id."""


class EmptyPoolError(PIEError, ValueError):
    """An operation needs at least one demonstration."""


class IndexLoadError(PIEError, ValueError):
    """A saved index folder is missing, foreign, tampered with, or from another format version."""


class EncoderMismatchError(PIEError, ValueError):
    """An index was built with a different encoder than the one given to load or search it."""


class UnknownModelError(PIEError, ValueError):
    """A model spec is neither a built-in alias, a local folder, nor a cached hub id."""


class PromptError(PIEError, ValueError):
    """A prompt template has missing or unknown placeholders."""


class MissingDependencyError(PIEError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise MissingDependencyError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = (
            f"{purpose} needs the optional dependency '{module}', which is not installed. "
            f'Install it with: pip install "pie-retriever[{extra}]"'
        )
        raise MissingDependencyError(msg) from exc
