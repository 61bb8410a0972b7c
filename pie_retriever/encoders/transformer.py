"""Instruction encoder on a Hugging Face transformer (BERT-like encoder or causal decoder).

Poolings (``POOLINGS``): ``mean`` (masked mean of the last layer), ``cls`` (first token), ``last``
(last non-padding token) and ``last2`` (last token averaged over the last two layers, the paper's decoder
pooling). Texts are tokenised once, sorted by length and batched to cut padding. Threads follow
:mod:`pie_retriever._threads`: one intra-op thread for a single text, every core for a batch, unless ``threads``
is given.

Precision policy (``PRECISIONS``; docs/speed.md, "Precision"): **fp32 by default, on every CPU**, so a text gets
one vector whether it is encoded alone, in a batch, in a Ray actor, or on a CPU with or without native bf16
(measured agreement: ``PRECISION_TOLERANCE``). ``precision="bf16"`` opts in to bfloat16 autocast for calls of
more than ``fp32_max_texts`` texts (a single query stays fp32, which is faster for it); its vectors then depend
on the batch they are padded in. The index manifest records the precision that ran. The environment variable
``PIE_PRECISION=fp32|bf16`` forces the precision of every encoder built afterwards (tests use it to run both
branches on any machine; torch emulates bf16 where the CPU lacks it). ``"auto"``, the value indexes saved before
this policy recorded, now means fp32.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any, Sequence

import numpy as np

from pie_retriever._threads import torch_threads
from pie_retriever._util import check_choice, check_int, cpu_flags
from pie_retriever.encoders.base import Encoder, check_texts, l2_normalize, warn_if_truncated
from pie_retriever.encoders.models import DEFAULT_MODEL, ResolvedModel, resolve_model, weights_fingerprint
from pie_retriever.encoders.prompts import apply_prompt, resolve_prompt
from pie_retriever.errors import UnknownModelError

logger = logging.getLogger(__name__)

POOLINGS: dict[str, str] = {
    "mean": "masked mean of the last layer's token states",
    "cls": "the first token's last-layer state ([CLS] for BERT-like models)",
    "last": "the last non-padding token's last-layer state",
    "last2": "the last non-padding token's state averaged over the last two layers (paper's decoder pooling)",
}
PRECISIONS: dict[str, str] = {
    "fp32": "float32 for every call (the default): one vector per text on every CPU, alone or in any batch",
    "bf16": "bfloat16 autocast for calls of more than fp32_max_texts texts (faster on CPUs with native bf16; "
            "vectors depend on the batch)",
    "auto": "the value of indexes saved before the fp32 default; now the same as fp32",
}
#: Environment variable that forces the precision of every TransformerEncoder built while it is set.
PRECISION_ENV = "PIE_PRECISION"
#: What the tests assert between two encodings of the same texts (alone vs batched, Ray vs local, thread counts):
#: the largest absolute difference of one vector component. Measured (benchmarks/precision.py, docs/speed.md): fp32
#: 2.2e-7 alone vs batched; bf16 autocast 1.6e-3 (cosine to fp32 >= 0.99993), more with other thread counts (Ray
#: actors), so identical top-k ids are asserted for it only where ties allow.
PRECISION_TOLERANCE: dict[str, float] = {"fp32": 1e-5, "bf16": 3e-2}

# Inputs longer than this many texts get a progress bar by default (when stderr is a terminal).
PROGRESS_THRESHOLD = 512
#: Under precision="bf16", calls with at most this many texts run in fp32: bf16 autocast only pays off once a
#: batch is large enough to amortise its casts (measured: one query 5.6 ms fp32 vs 8.5 ms bf16; docs/speed.md).
FP32_MAX_TEXTS = 2  # measured crossover on 2 cores: fp32 faster for 1-2 texts, bf16 from 4 (docs/speed.md)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (``avx512_bf16`` or ``amx_bf16``); reported, never a switch."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def bf16_is_native() -> bool:
    """Whether bf16 math runs natively in this process: the CPU has the instructions and torch's kernels use them
    (``ATEN_CPU_CAPABILITY=avx2`` caps them). Elsewhere bf16 is emulated, ~25x slower than fp32 (measured on a
    MiniLM-sized MLP step: 13 s against 0.46 s). Never changes what an encoder computes: training's
    ``precision="auto"`` and the benchmark's bf16 rows read it to avoid a crawl."""
    if not cpu_has_native_bf16():
        return False
    import torch

    return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX", "AVX2")


def resolve_precision(precision: str) -> str:
    """The precision an encoder runs: ``$PIE_PRECISION`` when set (``fp32`` or ``bf16``), else ``precision`` with the
    legacy ``"auto"`` read as ``fp32``. Never depends on the CPU."""
    check_choice("precision", precision, PRECISIONS)
    forced = os.environ.get(PRECISION_ENV, "").strip()
    if forced:
        valid = {k: v for k, v in PRECISIONS.items() if k != "auto"}
        return check_choice(f"${PRECISION_ENV}", forced, valid)
    return "fp32" if precision == "auto" else precision


class TransformerEncoder(Encoder):
    """Embed instructions with a transformer and a prompt.

    Args:
        model: alias (``minilm``, ``pie-minilm``, ``smollm2``), local folder, or cached hub id.
        prompt: prompt name (``pie``, ``plain``) or template with ``{instruction}``; default: the model's own.
        query_prompt: prompt for queries; default: same as ``prompt``.
        pooling: one of ``POOLINGS``; default: the model's own (``mean`` for MiniLM, ``last2`` for decoders).
        max_length: token limit per text; longer texts are truncated with one warning per call.
        batch_size: texts per forward pass.
        precision: ``fp32`` (default) or ``bf16`` (see the module's precision policy; ``$PIE_PRECISION`` overrides;
            ``auto`` is read as ``fp32``).
        device: torch device string.
        threads: torch intra-op threads for every call; default ``None`` = the policy of
            :mod:`pie_retriever._threads` (1 for a single text, every core for a batch).
        fp32_max_texts: under ``precision="bf16"``, calls with at most this many texts run in fp32.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt: str | None = None,
        query_prompt: str | None = None,
        pooling: str | None = None,
        max_length: int = 256,
        batch_size: int = 64,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
        fp32_max_texts: int = FP32_MAX_TEXTS,
    ) -> None:
        if model is None:  # the library default, as for PIERetriever, the CLI and the integrations
            model = DEFAULT_MODEL
        self.resolved: ResolvedModel = resolve_model(model)
        self.model_spec = model if isinstance(model, str) else str(model)
        self.prompt = resolve_prompt(prompt if prompt is not None else self.resolved.default_prompt)
        self.query_prompt = resolve_prompt(query_prompt) if query_prompt is not None else self.prompt
        self.pooling = check_choice("pooling", pooling or self.resolved.default_pooling, POOLINGS)
        self.precision = resolve_precision(precision)
        self.max_length = check_int(max_length, "max_length", minimum=8)
        self.batch_size = check_int(batch_size, "batch_size")
        self.device = device
        self.threads = None if threads is None else check_int(threads, "threads")
        self.fp32_max_texts = check_int(fp32_max_texts, "fp32_max_texts", minimum=0)
        self._tokenizer_lock = threading.Lock()
        self._load()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_tokenizer_lock"]  # locks cannot be copied or pickled; each copy gets its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tokenizer_lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        if "onnx" in self.resolved.extra:
            msg = (f"Model {self.model_spec!r} is an ONNX export; run it with OnnxEncoder, or pass it to make_encoder(), "
                   "PIERetriever or --model, which pick OnnxEncoder for an export folder.")
            raise UnknownModelError(msg)
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        path = str(self.resolved.path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # Right padding: causal models then see the same positions as unpadded text, and `last` pooling
        # finds the last real token from the attention mask.
        self.tokenizer.padding_side = "right"
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
        self.head = None
        if self.resolved.artifact is not None:
            from pie_retriever.encoders.artifact import apply_artifact

            model, self.head = apply_artifact(model, self.resolved.artifact)
        model.eval()
        self.model = model.to(self.device)
        model_max = getattr(self.model.config, "max_position_embeddings", None) or self.max_length
        self.max_length = min(self.max_length, int(model_max))
        self._dim = int(self.head.out_features if self.head is not None and hasattr(self.head, "out_features")
                        else self.model.config.hidden_size)
        weights = weights_fingerprint(self.resolved)  # an unchanged export reuses its source's
        key = f"{weights}|{self.prompt}|{self.query_prompt}|{self.pooling}|{self.max_length}"
        self._fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def use_bf16(self) -> bool:
        """Whether batches run under bf16 autocast (see :meth:`bf16_for` for a call of a given size)."""
        return self.precision == "bf16"

    def bf16_for(self, n_texts: int) -> bool:
        """Whether a call with ``n_texts`` texts runs under bf16 autocast (never for calls of at most
        ``fp32_max_texts`` texts)."""
        return self.use_bf16 and n_texts > self.fp32_max_texts

    def config(self) -> dict[str, Any]:
        """The saved encoder config. A local folder is stored as its absolute path (an alias or a hub id as
        given), so an index built with ``--model runs/tiny`` loads from any working directory; the manifest's
        fingerprint still checks the weights on load."""
        from pathlib import Path

        from pie_retriever.encoders.models import MODEL_ALIASES

        model = self.model_spec
        local = self.resolved.artifact or self.resolved.path
        if model not in MODEL_ALIASES and local is not None:
            from huggingface_hub.constants import HF_HUB_CACHE

            cache = Path(HF_HUB_CACHE).expanduser().resolve()
            if cache not in Path(local).resolve().parents:  # not a hub id served from the local cache
                model = str(Path(local).resolve())
        return {
            "type": "transformer", "model": model, "prompt": self.prompt, "query_prompt": self.query_prompt,
            "pooling": self.pooling, "max_length": self.max_length, "batch_size": self.batch_size,
            "precision": self.precision,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TransformerEncoder:
        cfg = dict(config)
        model = cfg.pop("model")
        return cls(model, **cfg)

    # -- encoding ----------------------------------------------------------------------------------
    def pooled(self, out: Any, mask: Any) -> Any:
        """Pool a model output (``last_hidden_state``, ``hidden_states``) into one vector per row by ``self.pooling``.

        Public so training and benchmarks pool exactly as encoding does.
        """
        import torch

        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            return (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        # last non-padding position, valid for left and right padding alike
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask).argmax(dim=1)
        rows = torch.arange(mask.shape[0], device=mask.device)
        if self.pooling == "last":
            return out.last_hidden_state[rows, last]
        hs = out.hidden_states
        return (hs[-1][rows, last] + hs[-2][rows, last]) / 2.0

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        import torch

        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        template = resolve_prompt(prompt) if prompt is not None else self.prompt
        prompted = [apply_prompt(template, t) for t in texts]
        # A fast tokenizer keeps its truncation/padding settings on the shared Rust object: calls with
        # different settings from several threads corrupt each other, so tokenization is serialised.
        with self._tokenizer_lock:
            enc = self.tokenizer(prompted, truncation=False, add_special_tokens=True)["input_ids"]
            if warn_if_truncated(enc, self.max_length):
                enc = self.tokenizer(prompted, truncation=True, max_length=self.max_length, add_special_tokens=True)["input_ids"]
        order = np.argsort([-len(ids) for ids in enc], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if show_progress is None:
            show_progress = len(texts) >= PROGRESS_THRESHOLD
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="Encoding", unit="text", disable=None if show_progress else True)
        need_hidden = self.pooling == "last2"
        autocast = torch.autocast("cpu" if self.device == "cpu" else "cuda", dtype=torch.bfloat16, enabled=self.bf16_for(len(texts)))
        try:
            with torch_threads(self.threads, len(texts)), torch.inference_mode(), autocast:
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    with self._tokenizer_lock:
                        batch = self.tokenizer.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
                    batch = {k: v.to(self.device) for k, v in batch.items()}
                    result = self.model(**batch, output_hidden_states=need_hidden)
                    pooled = self.pooled(result, batch["attention_mask"])
                    if self.head is not None:
                        pooled = self.head(pooled)
                    out[idx] = pooled.float().cpu().numpy()
                    bar.update(len(idx))
        finally:
            bar.close()
        return l2_normalize(out)
