"""Instruction encoder on an ONNX export: ``tokenizers`` + ``onnxruntime`` + numpy, no torch.

The folder is written by :func:`pie_retriever.encoders.onnx_export.export_onnx` (``pie-retriever export``): the graph
holds the transformer with its pooling and head, so this class only applies the prompt, tokenizes, pads
length-sorted batches, runs the graph and L2-normalises. Threads follow :mod:`pie_retriever._threads`: one
intra-op thread for a single text, every core for a batch (two onnxruntime sessions, the batch one created
on first use).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever._threads import resolve_threads
from pie_retriever._util import check_int
from pie_retriever.encoders.base import Encoder, check_texts, l2_normalize, warn_if_truncated
from pie_retriever.encoders.models import (
    DEFAULT_ONNX_MODEL,
    ONNX_CARD,
    ONNX_MODEL,
    TOKENIZER_FILE,
    file_fingerprint,
    file_sha256,
    resolve_model,
)
from pie_retriever.encoders.prompts import apply_prompt, resolve_prompt
from pie_retriever.errors import ConfigError, ModelIntegrityError, UnknownModelError, require

__all__ = ["OnnxEncoder", "check_onnx_options", "verify_export_files"]

logger = logging.getLogger(__name__)

class OnnxEncoder(Encoder):
    """Embed instructions with an ONNX export (see :mod:`pie_retriever.encoders.onnx_export`).

    Args:
        model: an export folder, or a model spec resolving to one (the ``pie-minilm-lc-onnx`` alias of the default model,
            once built: ``make_encoder(alias)`` builds an alias's export into the cache at first use).
        prompt / query_prompt: override the card's prompts (applied before tokenizing, as in the torch encoder).
        max_length: token limit per text; default the card's (at most the model's position limit).
        batch_size: texts per onnxruntime call.
        threads: intra-op threads for every call; default ``None`` = the policy of :mod:`pie_retriever._threads`
            (1 for a single text, every core for a batch).

    Its fingerprint equals the torch encoder's when the export's vectors matched torch within
    ``MATCH_TOLERANCE`` (cosine) at export time (fp32 exports), and is its own otherwise (int8 exports).
    """

    def __init__(self, model: Any = None, *, prompt: str | None = None, query_prompt: str | None = None,
                 max_length: int | None = None, batch_size: int = 64, threads: int | None = None) -> None:
        self.model_spec = os.fspath(model) if isinstance(model, os.PathLike) else (model or DEFAULT_ONNX_MODEL or "minilm")
        resolved = resolve_model(self.model_spec)
        if "onnx" not in resolved.extra:
            msg = (f"Model {self.model_spec!r} is not an ONNX export (no {ONNX_CARD}); export it first with "
                   f"`pie-retriever export {self.model_spec} -o DIR` and pass DIR, or use TransformerEncoder.")
            raise UnknownModelError(msg)
        self.folder: Path = resolved.path
        self.card: dict[str, Any] = resolved.extra["onnx"]
        self.threads = None if threads is None else check_int(threads, "threads")
        self._sessions: dict[int, Any] = {}
        self._session_lock = threading.Lock()
        verify_export_files(self.folder, self.card)
        self.prompt = resolve_prompt(prompt if prompt is not None else self.card["prompt"])
        self.query_prompt = resolve_prompt(query_prompt if query_prompt is not None else self.card["query_prompt"])
        self.pooling = self.card["pooling"]
        limit = int(self.card.get("max_positions") or self.card["max_length"])
        self.max_length = min(check_int(max_length if max_length is not None else self.card["max_length"], "max_length", minimum=8), limit)
        self.batch_size = check_int(batch_size, "batch_size")
        self._pad = int(self.card["pad_token_id"])
        self._load_tokenizers()
        self._fingerprint = self._compute_fingerprint()

    def _load_tokenizers(self) -> None:
        tokenizers = require("tokenizers", "onnx", "The ONNX encoder")
        path = str(self.folder / TOKENIZER_FILE)
        # Two tokenizers with fixed settings (never changed after this), so calls from several threads are safe.
        self._tok = tokenizers.Tokenizer.from_file(path)
        self._tok.no_truncation()
        self._tok.no_padding()
        self._tok_trunc = tokenizers.Tokenizer.from_file(path)
        self._tok_trunc.no_padding()
        self._tok_trunc.enable_truncation(self.max_length)

    def _compute_fingerprint(self) -> str:
        if self.card.get("matches_source"):
            weights = self.card["source_weights"]  # the torch encoder's formula: same vectors, same fingerprint
        else:
            weights = f"onnx-{self.card['quantize']}:{file_fingerprint(self.folder / ONNX_MODEL)}:{self.card['source_weights']}"
        key = f"{weights}|{self.prompt}|{self.query_prompt}|{self.pooling}|{self.max_length}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_sessions", "_session_lock", "_tok", "_tok_trunc"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sessions, self._session_lock = {}, threading.Lock()
        self._load_tokenizers()

    # -- Encoder surface -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.card["dim"])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def config(self) -> dict[str, Any]:
        folder_spec = Path(self.model_spec).expanduser().is_dir()
        return {"type": "onnx", "model": str(self.folder) if folder_spec else self.model_spec, "prompt": self.prompt,
                "query_prompt": self.query_prompt, "max_length": self.max_length, "batch_size": self.batch_size}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OnnxEncoder:
        cfg = dict(config)
        model = cfg.pop("model")
        return cls(model, **cfg)

    # -- inference -------------------------------------------------------------------------------------
    def session(self, threads: int) -> Any:
        """The onnxruntime session with ``threads`` intra-op threads (created once, then reused)."""
        sess = self._sessions.get(threads)
        if sess is not None:
            return sess
        ort = require("onnxruntime", "onnx", "The ONNX encoder")
        with self._session_lock:
            if threads not in self._sessions:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                # Spinning worker threads burn the cores other processes need on a shared machine and then wait
                # for them: measured as the main cause of the latency collapse under load.
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                self._sessions[threads] = ort.InferenceSession(str(self.folder / ONNX_MODEL), opts, providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def token_ids(self, prompted: Sequence[str]) -> list[list[int]]:
        """Token ids of already-prompted texts, truncated to ``max_length`` (one warning per call if any was longer)."""
        if len(prompted) == 1:
            ids = [self._tok.encode(prompted[0]).ids]
        else:
            ids = [e.ids for e in self._tok.encode_batch(list(prompted))]
        if warn_if_truncated(ids, self.max_length, stacklevel=4):
            long = [i for i, x in enumerate(ids) if len(x) > self.max_length]
            for i, enc in zip(long, self._tok_trunc.encode_batch([prompted[i] for i in long])):
                ids[i] = enc.ids
        return ids

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        template = resolve_prompt(prompt) if prompt is not None else self.prompt
        ids = self.token_ids([apply_prompt(template, t) for t in texts])
        sess = self.session(resolve_threads(self.threads, len(texts)))
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = len(ids[idx[0]])
            input_ids = np.full((len(idx), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            out[idx] = sess.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})[0]
        return l2_normalize(out)


def verify_export_files(folder: Path, card: dict[str, Any]) -> None:
    """Check the export's files against the sha256 its card recorded (``files_sha256``, cards of version 2 on);
    raise :class:`~pie_retriever.errors.ModelIntegrityError` naming the file that differs. The fingerprint of an
    export covers only the file's size and first and last MiB, so without this an export edited in place (bytes
    zeroed in the middle, same size) would load and give other vectors. Cards written before version 2 have no
    hashes and are loaded unchecked (re-export to get them)."""
    hashes = card.get("files_sha256")
    if not isinstance(hashes, dict) or not hashes:
        logger.debug("ONNX export %s has no files_sha256 in its card (made before card version 2): not verified", folder)
        return
    for name, expected in sorted(hashes.items()):
        path = Path(folder) / str(name)
        if Path(str(name)).name != str(name) or not path.is_file():
            msg = f"ONNX export {folder} lists {name!r} in its card's files_sha256, but it is not a file of the folder; re-export it."
            raise ModelIntegrityError(msg)
        actual = file_sha256(path)
        if actual != expected:
            msg = (f"ONNX export {folder}: {name} was modified after export (its sha256 {actual[:16]}... differs from the "
                   f"{str(expected)[:16]}... its card {ONNX_CARD} recorded), so its vectors are no longer the ones the "
                   "fingerprint stands for; refusing to load it. Delete the folder and re-export it (a cached export is "
                   "rebuilt at next use once deleted).")
            raise ModelIntegrityError(msg)


def check_onnx_options(pooling: str | None, precision: str | None) -> None:
    """An export fixes its pooling and precision; asking for others is an error (used by ``make_encoder``)."""
    if pooling is not None or precision not in (None, "auto"):
        msg = (f"An ONNX export has its pooling and precision built in (pooling={pooling!r}, precision={precision!r} given); "
               "re-export with `pie-retriever export MODEL -o DIR --format onnx --pooling ... --set quantize=int8|none` to change them.")
        raise ConfigError(msg)
