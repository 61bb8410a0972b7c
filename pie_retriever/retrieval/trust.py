"""What a loaded index folder may cause: nothing runs, nothing is contacted, no secret leaves, bounded resources.

An index folder is untrusted input (it may come from a colleague, a download or an attacker). Its manifest
names an encoder config and index options; :func:`check_encoder_config` and :func:`check_index_options` read
them **before** anything is built, under a :class:`LoadPolicy` that only the caller sets (by argument, or by
the caller's environment for the command line), never the folder:

- **No code runs.** A config that asks for ``trust_remote_code`` (anywhere, ``llm_kwargs`` included), or
  engine keyword arguments outside a known-safe list, is refused unless the caller passes
  ``trust_remote_code=True``. A model path inside the index folder is always refused: the manifest's hashes
  cover the files it lists, not a sub-folder, so such weights (or code) could be swapped unseen.
- **Nothing is contacted.** A server encoder's URL comes from the caller (``encoder=``) or the caller's
  ``$PIE_RETRIEVER_BASE_URL``; the manifest's URL is used only if ``allow_remote`` allows it (``True``, or a
  list of allowed URLs). The API key is sent only to that URL. A Milvus URI naming a server, or a Milvus Lite
  file outside the folder that holds the index, needs ``allow_remote`` as well.
- **Bounded.** Every numeric knob a manifest can set has bounds (:data:`BOUNDS`); a value outside them is
  refused with the key, the value and the bound.

Environment (for the command line and other callers that cannot pass arguments): ``PIE_ALLOW_REMOTE``
(``1``/``true`` for any URL, or a comma-separated list of URLs) and ``PIE_TRUST_REMOTE_CODE=1``; an explicit
argument wins over them. See docs/reliability.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from pie_retriever.errors import IndexLoadError

ALLOW_REMOTE_ENV = "PIE_ALLOW_REMOTE"
TRUST_REMOTE_CODE_ENV = "PIE_TRUST_REMOTE_CODE"
BASE_URL_ENV = "PIE_RETRIEVER_BASE_URL"

# inclusive bounds of every numeric knob a manifest may set (encoder config, vLLM engine kwargs)
BOUNDS: dict[str, tuple[float, float]] = {
    "batch_size": (1, 4096),
    "max_length": (1, 131_072),
    "threads": (1, 256),
    "timeout": (0.001, 600.0),
    "backoff": (0.0, 60.0),
    "max_retries": (0, 20),
    "truncate_prompt_tokens": (-1, 131_072),
    "fp32_max_texts": (0, 4096),
    "max_model_len": (1, 131_072),
    "max_num_seqs": (1, 4096),
    "max_num_batched_tokens": (1, 1_048_576),
    "gpu_memory_utilization": (0.01, 1.0),
    "tensor_parallel_size": (1, 64),
    "seed": (0, 2**32 - 1),
    "swap_space": (0, 1024),  # GiB of CPU swap for the KV cache
    "kv_cache_memory_bytes": (1 << 20, 1 << 40),
}
# vLLM engine kwargs a manifest may carry without trust_remote_code (none of them loads code or files)
SAFE_ENGINE_KWARGS = frozenset({"dtype", "max_model_len", "enforce_eager", "seed", "gpu_memory_utilization",
                                "max_num_seqs", "max_num_batched_tokens", "tensor_parallel_size", "pooler_config",
                                "swap_space", "kv_cache_memory_bytes"})
_TRUTHY = {"1", "true", "yes", "on", "all", "*"}


@dataclass(frozen=True)
class LoadPolicy:
    """What the caller allows a loaded folder to cause. The defaults allow nothing beyond local, bounded work."""

    trust_remote_code: bool = False
    allow_remote: bool | tuple[str, ...] = False

    @classmethod
    def resolve(cls, trust_remote_code: bool | None = None, allow_remote: Any = None) -> LoadPolicy:
        """The policy of explicit arguments, falling back to the caller's environment for ``None``."""
        if trust_remote_code is None:
            trust_remote_code = os.environ.get(TRUST_REMOTE_CODE_ENV, "").strip().lower() in _TRUTHY
        if allow_remote is None:
            raw = os.environ.get(ALLOW_REMOTE_ENV, "").strip()
            allow_remote = True if raw.lower() in _TRUTHY else tuple(u.strip() for u in raw.split(",") if u.strip())
        if not isinstance(trust_remote_code, bool):
            msg = f"trust_remote_code must be True or False, got {trust_remote_code!r}."
            raise TypeError(msg)
        if isinstance(allow_remote, str):
            allow_remote = (allow_remote,)
        elif not isinstance(allow_remote, bool):
            allow_remote = tuple(allow_remote)
            if not all(isinstance(u, str) for u in allow_remote):
                msg = f"allow_remote must be True, False or a list of URLs, got {allow_remote!r}."
                raise TypeError(msg)
        return cls(trust_remote_code, allow_remote)

    def allows_url(self, url: str) -> bool:
        if self.allow_remote is True:
            return True
        if not self.allow_remote:
            return False
        return _norm_url(url) in {_norm_url(u) for u in self.allow_remote}


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/")


def _refuse(folder: Path, what: str, fix: str) -> IndexLoadError:
    return IndexLoadError(f"{folder}: refusing to load this index: {what}. {fix}")


def _check_bounds(cfg: Mapping[str, Any], folder: Path, where: str) -> None:
    for key, value in cfg.items():
        if key not in BOUNDS or value is None or isinstance(value, bool):
            continue
        low, high = BOUNDS[key]
        ok = isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high
        if not ok:
            raise _refuse(folder, f"{where} sets {key}={value!r:.40}, outside the allowed range [{low:g}, {high:g}]",
                          "Rebuild the index with a value in range, or pass your own encoder (encoder=...).")


def _asks_for_code(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any((k == "trust_remote_code" and v not in (False, None)) or _asks_for_code(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_asks_for_code(v) for v in value)
    return False


def _check_model_path(model: Any, folder: Path) -> None:
    if not isinstance(model, str) or not model:
        return
    try:
        path = Path(model).expanduser().resolve()
        inside = path == folder.resolve() or folder.resolve() in path.parents
    except (OSError, RuntimeError, ValueError):
        return
    if inside:
        raise _refuse(folder, f"its encoder model {model!r} lies inside the index folder, where the manifest's hashes "
                              "do not cover it (weights or code there could be swapped unseen)",
                      "Keep model folders outside index folders, or pass your own encoder (encoder=...).")


def check_encoder_config(saved: Mapping[str, Any], policy: LoadPolicy, folder: Path) -> dict[str, Any]:
    """Check a manifest's encoder config (without its fingerprint) against ``policy``; return the config to build.

    For a server encoder the returned config carries the URL to use (the caller's ``$PIE_RETRIEVER_BASE_URL``
    when set). Raises :class:`~pie_retriever.errors.IndexLoadError` saying what was refused and how to allow it."""
    cfg = dict(saved)
    where = f"the manifest's {cfg.get('type')!s:.20} encoder config"
    if _asks_for_code(cfg) and not policy.trust_remote_code:
        raise _refuse(folder, f"{where} asks for trust_remote_code (it would run code shipped with the model)",
                      "If you trust where this index came from, pass trust_remote_code=True (CLI: --trust-remote-code).")
    _check_model_path(cfg.get("model"), folder)
    _check_bounds(cfg, folder, where)
    engine = cfg.get("llm_kwargs")
    if engine is not None:
        if not isinstance(engine, Mapping):
            raise _refuse(folder, f"{where} has llm_kwargs of type {type(engine).__name__}", "Rebuild the index.")
        extra = sorted(set(engine) - SAFE_ENGINE_KWARGS)
        if extra and not policy.trust_remote_code:
            raise _refuse(folder, f"{where} passes engine options {extra} that are not on the safe list "
                                  f"{sorted(SAFE_ENGINE_KWARGS)}",
                          "If you trust where this index came from, pass trust_remote_code=True (CLI: --trust-remote-code).")
        _check_bounds(engine, folder, f"{where} (llm_kwargs)")
    if cfg.get("type") == "server":
        cfg["base_url"] = _server_url(cfg.get("base_url"), policy, folder)
    return cfg


def _server_url(saved_url: Any, policy: LoadPolicy, folder: Path) -> str:
    env = os.environ.get(BASE_URL_ENV, "").strip()
    if env:
        return env
    if isinstance(saved_url, str) and saved_url and policy.allows_url(saved_url):
        return saved_url
    raise _refuse(folder, f"its server encoder would send every query (and your API key) to {saved_url!r:.100}, a URL "
                          "named by the folder, not by you",
                  f"Point it at your server with ${BASE_URL_ENV}=URL, pass encoder=ServerEncoder(...), or allow that URL "
                  f"with allow_remote=[{saved_url!r:.100}] (CLI: --allow-remote URL; ${ALLOW_REMOTE_ENV}).")


def check_index_options(kind: str, options: Mapping[str, Any], policy: LoadPolicy, folder: Path) -> None:
    """Refuse index options that would contact a server or open a database the caller did not allow."""
    if kind != "milvus" or not isinstance(options, Mapping):
        return
    uri = options.get("uri")
    if not isinstance(uri, str):
        return
    if "://" in uri:
        if not policy.allows_url(uri):
            raise _refuse(folder, f"its vectors live on the Milvus server {uri!r:.100}, a URL named by the folder",
                          f"Allow it with allow_remote=[{uri!r:.100}] (CLI: --allow-remote URL; ${ALLOW_REMOTE_ENV}).")
        return
    home = folder.resolve().parent
    try:
        db = Path(uri).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        db = Path(uri)
    if home not in db.parents and not policy.allows_url(uri):
        raise _refuse(folder, f"its vectors live in the Milvus Lite file {uri!r:.100}, outside the folder {home} that "
                              "holds the index",
                      f"Allow it with allow_remote=[{uri!r:.100}] (CLI: --allow-remote PATH; ${ALLOW_REMOTE_ENV}).")


def policy_arguments(values: Iterable[str] | None, trust: bool) -> LoadPolicy:
    """The policy of the CLI flags ``--allow-remote URL`` (repeatable; ``all`` for any) and ``--trust-remote-code``."""
    urls = list(values or [])
    allow: Any = True if any(u.lower() in _TRUTHY for u in urls) else (tuple(urls) or None)
    return LoadPolicy.resolve(True if trust else None, allow)
