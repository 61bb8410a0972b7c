"""Every exception pie_retriever raises on purpose, in one place.

Each class subclasses a built-in as well as :class:`PIEError`, so ``except ValueError`` (or
``ImportError``, ``KeyError``) keeps working for callers who do not know this library's types.
"""

from __future__ import annotations


class PIEError(Exception):
    """Base class of every error raised on purpose by pie_retriever. Never raised bare."""


class ConfigError(PIEError, ValueError):
    """An option, argument or setting has a wrong type or value (the message says which and what is valid)."""


class InvalidDemonstrationError(PIEError, ValueError):
    """A demonstration is missing its instruction or has a field of the wrong type."""


class InvalidQueryError(PIEError, ValueError):
    """A query that cannot be encoded: empty, or not valid Unicode text (a lone surrogate)."""


class PoolFormatError(PIEError, ValueError):
    """A pool file cannot be read: malformed JSON/JSONL, wrong shape, or not UTF-8."""


class DuplicateIdError(PIEError, ValueError):
    """Two demonstrations share an id."""


class EmptyPoolError(PIEError, ValueError):
    """An operation needs at least one demonstration."""


class IndexLoadError(PIEError, ValueError):
    """A saved index folder is missing, foreign, tampered with, or from another format version."""


class IndexSaveError(PIEError, OSError):
    """An index could not be written (full disk, I/O error); the previous save of the folder is untouched."""


class EncoderMismatchError(PIEError, ValueError):
    """An index was built with a different encoder than the one given to load or search it."""


class UnknownModelError(PIEError, ValueError):
    """A model spec is neither a built-in alias, a local folder, nor a cached hub id."""


class OnnxNotBuiltError(UnknownModelError):
    """An ONNX alias whose export is not in the cache yet; ``make_encoder`` builds it (``source``, ``quantize``)."""

    def __init__(self, msg: str, *, source: str, quantize: str) -> None:
        super().__init__(msg)
        self.source, self.quantize = source, quantize


class ModelIntegrityError(PIEError, ValueError):
    """A model file's bytes differ from the sha256 its card recorded (an ONNX export edited or damaged after export)."""


class PromptError(PIEError, ValueError):
    """A prompt template has missing or unknown placeholders."""


class ArtifactError(PIEError, ValueError):
    """A trained-artifact folder is missing files, foreign, or does not fit the base model."""


class UnknownIdError(PIEError, KeyError):
    """A demonstration id (or a metadata filter key) that the pool does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message: show it as written
        return str(self.args[0]) if self.args else ""


class TrainingConfigError(ConfigError):
    """A training argument is unknown or out of range."""


class TrainingDataError(PIEError, ValueError):
    """Training data is missing, too small, or leaks held-out evaluation instructions."""


class EvalArgumentError(ConfigError):
    """An evaluation or benchmark command-line argument is wrong."""


class PromptBudgetError(PIEError, ValueError):
    """A few-shot prompt cannot fit the model's context window with the requested budget."""


class ServerError(PIEError, ConnectionError):
    """An OpenAI-compatible server cannot be reached, timed out, or failed a request (the message says which)."""

    def __init__(self, message: str, *, status_code: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url


class ExternalIndexError(PIEError, RuntimeError):
    """An index kept in an external engine (a Milvus collection) failed or changed under the retriever."""


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
