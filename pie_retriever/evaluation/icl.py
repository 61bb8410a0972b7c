"""End-to-end in-context-learning (ICL) harness: does a better-matched demonstration improve the LLM's answer?

For every query (an instruction with optional input and a gold output) and every *condition* (a way of
choosing ``k`` demonstrations from a pool: none, random, BM25, an embedding retriever, ...) the harness

1. picks the demonstrations (``retriever.retrieve_batch(queries, k)`` → lists of :class:`~pie_retriever.Hit`),
2. renders the prompt with :func:`pie_retriever.fewshot.format_few_shot` (Alpaca template by default),
3. generates greedily with an :class:`LLMBackend` (transformers, or vLLM when installed and requested),
4. scores the answer: exact match after :func:`normalize_answer` for short-answer tasks
   (:data:`SHORT_ANSWER_TASKS`), ROUGE-L F1 (:func:`rouge_l`) for free text.

Identical prompts are generated once and shared between conditions (two retrievers that pick the same
demonstrations cost one generation). Everything is deterministic: greedy decoding, seeded random picks.

>>> from pie_retriever.evaluation.icl import run_icl, TransformersBackend  # doctest: +SKIP
>>> report = run_icl(pool, queries, {"none": None, "random": "random", "bm25": bm25, "pie": pie},
...                  TransformersBackend("smollm2"), k=4)                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from ..fewshot import format_few_shot
from ..types import Demonstration, Hit

__all__ = [
    "BACKENDS",
    "SHORT_ANSWER_TASKS",
    "LLMBackend",
    "RandomRetriever",
    "contains_answer",
    "SameTaskRetriever",
    "TransformersBackend",
    "VLLMBackend",
    "exact_match",
    "make_backend",
    "paired_bootstrap",
    "normalize_answer",
    "rouge_l",
    "run_icl",
]

#: Tasks of the bundled pool whose outputs are one short, exactly checkable answer (pie_retriever/data/README.md).
SHORT_ANSWER_TASKS: frozenset[str] = frozenset({
    "classify|sentiment", "detect|spam", "verify|statement", "identify|part", "categorize|animal",
    "classify|headline", "find|antonym", "find|plural", "count|word", "solve|equation", "solve|problem",
    "convert|unit", "identify|language", "determine|capital", "extract|name",
})

#: Token budgets: a short answer is one line; free text is a few sentences.
MAX_NEW_TOKENS = {"short": 12, "free": 64}
#: Generation stops at these strings (the next "### Instruction:" block of the Alpaca template, or a newline).
STOP = {"short": ["\n"], "free": ["\n\n###", "\n###", "###"]}


# -- scoring ---------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[-+]?\d[\d,]*\.?\d*$")
_EDGE_PUNCT = " \t\"'`.,;:!?()[]{}*_"


def _canonical_token(tok: str) -> str:
    if _NUMBER.match(tok):
        try:
            value = float(tok.replace(",", ""))
        except ValueError:
            return tok
        return f"{value:.10g}"
    return tok


def normalize_answer(text: str) -> str:
    """Lowercase the first non-empty line, trim quotes/punctuation at the ends, collapse spaces, and write
    numbers canonically (``4.50`` → ``4.5``, ``1,000`` → ``1000``). Internal punctuation is kept
    (``Hannah, Leo`` stays a list of two names)."""
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    line = line.strip().lower().strip(_EDGE_PUNCT)
    tokens = [t.strip(_EDGE_PUNCT) if _NUMBER.match(t.strip(_EDGE_PUNCT)) else t for t in line.split()]
    return " ".join(_canonical_token(t) for t in tokens if t)


def exact_match(prediction: str, gold: str) -> bool:
    """True when both answers are equal after :func:`normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(gold)


def contains_answer(prediction: str, gold: str) -> bool:
    """Lenient check: the normalised gold answer occurs as whole words in the normalised first line of the
    prediction (``The review is negative.`` contains ``negative``). Reported next to exact match, never
    instead of it: it also accepts an answer that lists several options."""
    g, p = normalize_answer(gold), normalize_answer(prediction)
    if not g:
        return False
    return re.search(r"(?<![\w])" + re.escape(g) + r"(?![\w])", p) is not None


def _rouge_tokens(text: str) -> list[str]:
    # rouge-score's default tokenizer: lowercase, non-alphanumerics become spaces, no stemming.
    return re.sub(r"[^a-z0-9]+", " ", str(text).lower()).split()


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 on lowercased alphanumeric tokens (same numbers as ``rouge_score``'s ``rougeL`` without
    stemming; implemented here so the harness needs no extra package)."""
    p, r = _rouge_tokens(prediction), _rouge_tokens(reference)
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


# -- LLM backends ----------------------------------------------------------------------------------
class LLMBackend(Protocol):
    """Greedy text generation: one completion per prompt, cut at the first stop string."""

    name: str

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]) -> list[str]: ...


def _cut(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def _resolve_llm_path(model: str) -> str:
    """``smollm2`` → the packaged SmolLM2-135M-Instruct folder (converted once from GGUF); else a folder."""
    if model == "smollm2":
        from ..llm.gguf import smollm2_path

        return str(smollm2_path())
    from ..models import resolve_model

    return str(resolve_model(model).path)


class TransformersBackend:
    """Greedy generation with transformers ``generate`` (float32 on CPU by default).

    Prompts are sorted by length and generated in left-padded batches of ``batch_size``; ``threads`` sets
    ``torch.set_num_threads`` (on a loaded, shared machine 1 thread can be several times faster than 2).
    ``chat=True`` wraps each prompt as one user turn of the model's chat template; the default sends the
    raw few-shot text, which is what the demonstrations are formatted for.
    """

    def __init__(self, model: str = "smollm2", *, dtype: str = "float32", batch_size: int = 4,
                 threads: int | None = None, chat: bool = False, device: str = "cpu") -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        if threads:
            torch.set_num_threads(int(threads))
        self.path = _resolve_llm_path(model)
        self.name = f"transformers:{model}"
        self.model_name = model
        self.batch_size = int(batch_size)
        self.chat = chat
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, dtype)).to(device).eval()
        self.dtype = dtype
        self.prompt_tokens = 0
        self.generated_tokens = 0

    def _render(self, prompt: str) -> str:
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        import torch

        texts = [self._render(p) for p in prompts]
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out: list[str] = [""] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(
                    **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=self.tokenizer.pad_token_id, stop_strings=list(stop), tokenizer=self.tokenizer,
                )
            new = gen[:, batch["input_ids"].shape[1]:]
            for row, i in enumerate(idx):
                ids = new[row]
                ids = ids[ids != self.tokenizer.pad_token_id]
                self.generated_tokens += int(len(ids))
                out[i] = _cut(self.tokenizer.decode(ids, skip_special_tokens=True), stop)
            self.prompt_tokens += int(sum(lengths[i] for i in idx))
        return out


class VLLMBackend:
    """Greedy generation with vLLM (``vllm-cpu`` on CPU). Needs the ``vllm`` extra; start-up takes ~1 min."""

    def __init__(self, model: str = "smollm2", *, dtype: str = "float32", max_model_len: int = 2048, **llm_options: Any) -> None:
        import importlib.util
        import os

        if importlib.util.find_spec("vllm") is None:
            msg = "The vLLM backend needs vLLM: pip install 'pie-retriever[vllm]' (or use --icl-backend transformers)."
            raise ImportError(msg)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM

        self.path = _resolve_llm_path(model)
        self.name = f"vllm:{model}"
        self.model_name = model
        self.dtype = dtype
        options = {"dtype": dtype, "max_model_len": max_model_len, "enforce_eager": True, **llm_options}
        self.llm = LLM(model=self.path, **options)
        self.prompt_tokens = 0
        self.generated_tokens = 0

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop))
        results = self.llm.generate(list(prompts), params, use_tqdm=False)
        out = []
        for r in results:
            self.prompt_tokens += len(r.prompt_token_ids or [])
            self.generated_tokens += len(r.outputs[0].token_ids)
            out.append(_cut(r.outputs[0].text, stop))
        return out


#: ``--icl-backend`` choices.
BACKENDS: dict[str, Callable[..., LLMBackend]] = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(kind: str, model: str = "smollm2", **options: Any) -> LLMBackend:
    if kind not in BACKENDS:
        msg = f"Unknown LLM backend {kind!r}; choose one of: {', '.join(BACKENDS)}."
        raise ValueError(msg)
    return BACKENDS[kind](model, **options)


# -- baseline "retrievers" -------------------------------------------------------------------------
def _seed_for(text: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{text}".encode()).digest()[:8], "little")


class RandomRetriever:
    """``k`` demonstrations drawn uniformly from the pool, seeded per query (reproducible, order-free)."""

    def __init__(self, pool: Sequence[Demonstration], seed: int = 0) -> None:
        self.pool = list(pool)
        self.seed = seed

    def retrieve_batch(self, queries: Sequence[str], k: int = 4) -> list[list[Hit]]:
        out = []
        for q in queries:
            rng = random.Random(_seed_for(q, self.seed))
            picks = rng.sample(range(len(self.pool)), min(k, len(self.pool)))
            out.append([Hit(self.pool[i], 0.0, r) for r, i in enumerate(picks)])
        return out


class SameTaskRetriever:
    """Oracle upper bound: ``k`` random demonstrations *of the query's gold task* (needs the gold labels)."""

    def __init__(self, pool: Sequence[Demonstration], task_of_query: Mapping[str, str], *, label_key: str = "task", seed: int = 0) -> None:
        self.by_task: dict[Any, list[Demonstration]] = {}
        for d in pool:
            self.by_task.setdefault(d.metadata.get(label_key), []).append(d)
        self.task_of_query = dict(task_of_query)
        self.seed = seed

    def retrieve_batch(self, queries: Sequence[str], k: int = 4) -> list[list[Hit]]:
        out = []
        for q in queries:
            same = self.by_task.get(self.task_of_query.get(q), [])
            rng = random.Random(_seed_for(q, self.seed))
            picks = rng.sample(same, min(k, len(same)))
            out.append([Hit(d, 1.0, r) for r, d in enumerate(picks)])
        return out


# -- the harness -----------------------------------------------------------------------------------
@dataclass
class ICLRecord:
    query_id: str | None
    task: Any
    kind: str  # "short" or "free"
    prediction: str
    gold: str
    score: float
    contains: float
    demo_ids: list[str] = field(default_factory=list)
    demo_task_match: float = float("nan")


def _condition_hits(retriever: Any, pool: Sequence[Demonstration], queries: list[str], k: int, seed: int) -> list[list[Hit]]:
    if retriever is None or retriever == "none" or k == 0:
        return [[] for _ in queries]
    if isinstance(retriever, str):
        if retriever != "random":
            msg = f"Unknown retriever string {retriever!r}; use None/'none', 'random', or an object with retrieve_batch(queries, k)."
            raise ValueError(msg)
        retriever = RandomRetriever(pool, seed=seed)
    if not hasattr(retriever, "retrieve_batch"):
        msg = f"{type(retriever).__name__} has no retrieve_batch(queries, k) method."
        raise TypeError(msg)
    return retriever.retrieve_batch(queries, k)


def _mean(xs: Iterable[float]) -> float:
    xs = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return float(sum(xs) / len(xs)) if xs else float("nan")


def run_icl(
    pool: Sequence[Demonstration],
    queries: Sequence[Demonstration],
    retrievers: Mapping[str, Any],
    backend: LLMBackend,
    *,
    k: int = 4,
    label_key: str = "task",
    short_tasks: Iterable[str] | None = None,
    template: str = "alpaca",
    seed: int = 0,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Run every condition on every query and score the answers.

    Args:
        pool: the demonstrations the retrievers draw from (used by ``"random"``).
        queries: demonstrations whose ``output`` is the gold answer and ``metadata[label_key]`` the task.
        retrievers: condition name → ``None``/``"none"`` (zero-shot), ``"random"``, or any object with
            ``retrieve_batch(list_of_instructions, k) -> list[list[Hit]]``.
        backend: an :class:`LLMBackend`.
        short_tasks: tasks scored by exact match (default :data:`SHORT_ANSWER_TASKS`); others by ROUGE-L.

    Returns a JSON-serialisable dict: per condition ``score`` (mean over queries of exact match or ROUGE-L),
    ``exact_match`` (short-answer queries), ``rouge_l`` (free-text queries), ``demo_task_match`` (share of
    the demonstrations with the query's task), ``by_task`` and the per-query ``records``; plus the number
    of generations and tokens.
    """
    from tqdm.auto import tqdm

    queries = list(queries)
    short = frozenset(SHORT_ANSWER_TASKS if short_tasks is None else short_tasks)
    texts = [q.instruction for q in queries]
    kinds = ["short" if q.metadata.get(label_key) in short else "free" for q in queries]
    started = time.perf_counter()

    # 1. pick demonstrations and render prompts for every (condition, query)
    prompts: dict[str, list[str]] = {}
    hits_of: dict[str, list[list[Hit]]] = {}
    retrieval_s: dict[str, float] = {}
    for name, retriever in retrievers.items():
        t0 = time.perf_counter()
        hits = _condition_hits(retriever, pool, texts, k, seed)
        retrieval_s[name] = time.perf_counter() - t0
        hits_of[name] = hits
        prompts[name] = [format_few_shot(h, q.instruction, q.input, template=template) for h, q in zip(hits, queries)]

    # 2. generate each distinct (prompt, kind) once
    todo: dict[tuple[str, str], None] = {}
    for name in retrievers:
        for p, kind in zip(prompts[name], kinds):
            todo.setdefault((p, kind), None)
    answers: dict[tuple[str, str], str] = {}
    total = len(todo)
    bar = tqdm(total=total, desc="ICL generation", unit="prompt", disable=None if show_progress is not False else True)
    gen_started = time.perf_counter()
    try:
        for kind in ("short", "free"):
            keys = [key for key in todo if key[1] == kind]
            step = max(1, getattr(backend, "batch_size", 8)) * 4
            for start in range(0, len(keys), step):
                chunk = keys[start:start + step]
                outs = backend.generate([p for p, _ in chunk], max_new_tokens=MAX_NEW_TOKENS[kind], stop=STOP[kind])
                for key, text in zip(chunk, outs):
                    answers[key] = _cut(text, STOP[kind]).strip()  # also for backends that ignore `stop`
                bar.update(len(chunk))
    finally:
        bar.close()
    gen_s = time.perf_counter() - gen_started

    # 3. score
    conditions: dict[str, Any] = {}
    for name in retrievers:
        records = []
        for q, kind, p, hits in zip(queries, kinds, prompts[name], hits_of[name]):
            pred = answers[(p, kind)]
            score = float(exact_match(pred, q.output)) if kind == "short" else rouge_l(pred, q.output)
            task = q.metadata.get(label_key)
            match = _mean(float(h.demonstration.metadata.get(label_key) == task) for h in hits) if hits else float("nan")
            contains = float(contains_answer(pred, q.output)) if kind == "short" else float("nan")
            records.append(ICLRecord(q.id, task, kind, pred, q.output, score, contains, [h.demonstration.id for h in hits], match))
        by_task: dict[str, list[float]] = {}
        for r in records:
            by_task.setdefault(str(r.task), []).append(r.score)
        conditions[name] = {
            "score": _mean(r.score for r in records),
            "exact_match": _mean(r.score for r in records if r.kind == "short"),
            "contains": _mean(r.contains for r in records if r.kind == "short"),
            "rouge_l": _mean(r.score for r in records if r.kind == "free"),
            "demo_task_match": _mean(r.demo_task_match for r in records),
            "retrieval_s": round(retrieval_s[name], 4),
            "by_task": {t: _mean(v) for t, v in sorted(by_task.items())},
            "records": [r.__dict__ for r in records],
        }
    return {
        "k": k,
        "n_queries": len(queries),
        "n_short": kinds.count("short"),
        "n_free": kinds.count("free"),
        "template": template,
        "backend": getattr(backend, "name", type(backend).__name__),
        "n_generations": total,
        "n_prompts": sum(len(v) for v in prompts.values()),
        "generation_s": round(gen_s, 2),
        "prompt_tokens": getattr(backend, "prompt_tokens", None),
        "generated_tokens": getattr(backend, "generated_tokens", None),
        "wall_s": round(time.perf_counter() - started, 2),
        "conditions": conditions,
    }


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over paired items with a 95% percentile bootstrap interval."""
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(x) == 0:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    return {"diff": float(x.mean()), "lo": float(np.percentile(means, 2.5)), "hi": float(np.percentile(means, 97.5))}
