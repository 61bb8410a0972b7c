"""LLM backends for the ICL section: greedy generation with transformers (default) or vLLM (``vllm`` extra)."""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np

from pie_retriever._util import check_choice

__all__ = ["BACKENDS", "LLMBackend", "TransformersBackend", "VLLMBackend", "cut_at_stop", "make_backend"]


class LLMBackend(Protocol):
    """Greedy text generation: one completion per prompt, cut at the first stop string."""

    name: str

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]) -> list[str]: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first of the ``stop`` strings."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def _resolve_llm_path(model: str) -> str:
    """``smollm2`` → the packaged SmolLM2-135M-Instruct folder (converted once from GGUF); else a folder."""
    if model == "smollm2":
        from pie_retriever.encoders.weights.gguf import smollm2_path

        return str(smollm2_path())
    from pie_retriever.encoders.models import resolve_model

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
                out[i] = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stop)
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
            out.append(cut_at_stop(r.outputs[0].text, stop))
        return out


#: ``--icl-backend`` choices.
BACKENDS: dict[str, Callable[..., LLMBackend]] = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(kind: str, model: str = "smollm2", **options: Any) -> LLMBackend:
    """An LLM backend of :data:`BACKENDS` for ``model`` (``smollm2`` or a local folder)."""
    return BACKENDS[check_choice("LLM backend", kind, BACKENDS)](model, **options)
