"""Fast tests of the vLLM integration: no vLLM engine, no model (fake engine, fake tokenizer, fake vllm module).

The real engine tests (marker ``vllm``) are in ``test_vllm_real.py``.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.base import encoder_from_config
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import MissingDependencyError, PIEError
from pie_retriever.integrations.vllm import (
    FewShotPrompt,
    FewShotPromptBuilder,
    PIEGenerator,
    PromptBudgetError,
    VLLMEncoder,
    chat_user_content,
    cpu_llm_kwargs,
)
from pie_retriever.prompting.fewshot import format_few_shot
from pie_retriever.types import Demonstration


# ------------------------------------------------------------------------------------------------------
# Fakes
# ------------------------------------------------------------------------------------------------------
class WordTokenizer:
    """One token per whitespace-separated word; chat adds 2 tokens per message plus 1 for the generation prompt."""

    def encode(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=True, **kwargs):
        self.last_kwargs = kwargs
        ids = []
        for m in messages:
            ids += [0, 0] + self.encode(m["content"])
        ids += [0] if add_generation_prompt else []
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}  # transformers 5 returns a BatchEncoding


class FakeLLM:
    """The parts of ``vllm.LLM`` that PIEGenerator uses; records every call."""

    def __init__(self, tokenizer=None, max_model_len=None, *, defaults=True):
        self.calls: list[tuple] = []
        self._tokenizer = tokenizer
        self.model_config = SimpleNamespace(max_model_len=max_model_len, runner_type="generate")
        if not defaults:
            self.get_default_sampling_params = None

    def get_tokenizer(self):
        return self._tokenizer

    def get_default_sampling_params(self):
        return SimpleNamespace(max_tokens=16, temperature=0.7)

    def _answer(self, kind, inputs, sampling_params, kwargs):
        self.calls.append((kind, inputs, sampling_params, kwargs))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=f"{kind} answer {i}")], prompt=p) for i, p in enumerate(inputs)]

    def generate(self, prompts, sampling_params=None, **kwargs):
        return self._answer("generate", prompts, sampling_params, kwargs)

    def chat(self, messages, sampling_params=None, **kwargs):
        return self._answer("chat", messages, sampling_params, kwargs)


class GenerateOnly:
    def __init__(self):
        self.calls = []

    def generate(self, prompts, sampling_params=None):
        self.calls.append((prompts, sampling_params))
        return [SimpleNamespace(outputs=[SimpleNamespace(text="ok")]) for _ in prompts]


class CountingRetriever:
    """Delegates to a PIERetriever and counts retrieve_batch calls."""

    def __init__(self, inner):
        self.inner = inner
        self.batch_calls = 0
        self.embed_fields = inner.embed_fields

    def retrieve_batch(self, queries, k=4, **kwargs):
        self.batch_calls += 1
        return self.inner.retrieve_batch(queries, k, **kwargs)


@pytest.fixture
def retriever(small_pool):
    return PIERetriever.from_demonstrations(small_pool, HashingEncoder(dim=64))


QUERY = "Write a poem about the ocean at night."


# ------------------------------------------------------------------------------------------------------
# FewShotPromptBuilder
# ------------------------------------------------------------------------------------------------------
def test_build_uses_fewshot_alpaca_and_most_similar_last(retriever):
    builder = FewShotPromptBuilder(retriever, k=3)
    fs = builder.build(QUERY)
    hits = retriever.retrieve(QUERY, k=3)
    assert isinstance(fs, FewShotPrompt) and not fs.is_chat
    assert [h.id for h in fs.demonstrations] == [h.id for h in hits]
    assert fs.dropped == [] and fs.num_tokens is None
    expected = format_few_shot([h.demonstration for h in reversed(hits)], QUERY, "", "alpaca")
    assert fs.prompt == expected
    # the best match sits right before the query
    last_example = fs.prompt.rsplit("### Instruction:", 2)[-2]
    assert hits[0].demonstration.instruction in last_example
    assert fs.prompt.endswith("### Response:\n")


def test_most_similar_first_and_query_input(retriever):
    fs = FewShotPromptBuilder(retriever, k=3, order="most_similar_first").build("Summarize the text.", "A long text.")
    hits = retriever.retrieve("Summarize the text.", k=3)
    assert fs.prompt == format_few_shot([h.demonstration for h in hits], "Summarize the text.", "A long text.")
    assert "### Input:\nA long text." in fs.prompt
    assert fs.query_input == "A long text."


def test_templates_plain_mapping_callable(retriever):
    plain = FewShotPromptBuilder(retriever, k=2, template="plain").build(QUERY)
    assert plain.prompt.startswith("Instruction: ") and plain.prompt.endswith("Response:")
    spec = {"header": "EXAMPLES\n", "example": "Q: {instruction}\n{input_block}A: {output}", "input_block": "In: {input}\n",
            "separator": "\n---\n"}
    custom = FewShotPromptBuilder(retriever, k=2, template=spec).build(QUERY)
    assert custom.prompt.startswith("EXAMPLES\nQ: ") and custom.prompt.endswith(f"Q: {QUERY}\nA:")
    assert custom.prompt.count("\n---\n") == 2
    seen = {}

    def fn(demos, query, query_input):
        seen["demos"] = demos
        return f"{len(demos)} demos | {query} | {query_input}"

    out = FewShotPromptBuilder(retriever, k=2, template=fn).build(QUERY, "ctx")
    assert out.prompt == f"2 demos | {QUERY} | ctx"
    assert all(isinstance(d, Demonstration) for d in seen["demos"])


@pytest.mark.parametrize(
    ("template", "error", "match"),
    [
        ("chatml", ValueError, "Unknown few-shot template 'chatml'; choose one of: alpaca, plain"),
        ({"header": "", "example": "{instruction}"}, ValueError, "missing \\['input_block', 'separator'\\]"),
        ({"header": "", "example": "{instruction} {oops}", "input_block": "", "separator": ""}, ValueError, "Invalid template mapping"),
        (42, TypeError, "template must be a name"),
    ],
)
def test_bad_templates(retriever, template, error, match):
    with pytest.raises(error, match=match):
        FewShotPromptBuilder(retriever, template=template)


def test_bad_options(retriever):
    with pytest.raises(ValueError, match="Unknown order 'best_last'; choose one of: most_similar_last, most_similar_first"):
        FewShotPromptBuilder(retriever, order="best_last")
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        FewShotPromptBuilder(retriever, k=0)
    with pytest.raises(ValueError, match="max_model_len needs a tokenizer"):
        FewShotPromptBuilder(retriever, max_model_len=512)
    with pytest.raises(ValueError, match="max_tokens=600 leaves no room"):
        FewShotPromptBuilder(retriever, tokenizer=WordTokenizer(), max_model_len=512, max_tokens=600)
    with pytest.raises(ValueError, match=r"Unknown retrieve_options \['kk'\]"):
        FewShotPromptBuilder(retriever, retrieve_options={"kk": 1})
    with pytest.raises(TypeError, match="retriever must be a PIERetriever"):
        FewShotPromptBuilder(object())
    with pytest.raises(TypeError, match="tokenizer must be None"):
        FewShotPromptBuilder(retriever, tokenizer=3.5)


def test_build_chat_messages(retriever):
    builder = FewShotPromptBuilder(retriever, k=3, system_prompt="You are terse.")
    fs = builder.build_chat("Translate this sentence into Spanish.", "Good morning.")
    hits = fs.demonstrations
    msgs = fs.messages
    assert fs.is_chat and fs.prompt is None and fs.engine_input is msgs
    assert msgs[0] == {"role": "system", "content": "You are terse."}
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * 3 + ["user"]
    # most similar last: the turn right before the query is the best hit
    best = hits[0].demonstration
    assert msgs[-3] == {"role": "user", "content": chat_user_content(best.instruction, best.input)}
    assert msgs[-2] == {"role": "assistant", "content": best.output}
    assert msgs[-1] == {"role": "user", "content": "Translate this sentence into Spanish.\n\nGood morning."}
    no_system = builder.build_chat("Translate this.", system_prompt=None).messages
    assert no_system[0]["role"] == "user"


def test_build_batch_retrieves_once(retriever, small_pool):
    counting = CountingRetriever(retriever)
    encoder = retriever.encoder
    encoder.calls = 0
    builder = FewShotPromptBuilder(counting, k=2)
    queries = [QUERY, ("Summarize this.", "Some text."), {"instruction": "Translate to French.", "input": "Hi"},
               Demonstration("Compose a haiku.")]
    prompts = builder.build_batch(queries)
    assert counting.batch_calls == 1 and encoder.calls == 1
    assert [p.query for p in prompts] == [QUERY, "Summarize this.", "Translate to French.", "Compose a haiku."]
    assert prompts[1].query_input == "Some text." and prompts[2].query_input == "Hi"
    expected = retriever.retrieve_batch([QUERY, "Summarize this.", "Translate to French.", "Compose a haiku."], 2)
    assert [[h.id for h in p.demonstrations] for p in prompts] == [[h.id for h in row] for row in expected]
    chats = builder.build_batch(queries, chat=True)
    assert counting.batch_calls == 2 and all(p.is_chat for p in chats)
    with pytest.raises(TypeError, match="build_batch\\(\\) takes a list"):
        builder.build_batch(QUERY)
    assert builder.build_batch([]) == []


def test_query_embedding_follows_pool_embed_fields(small_pool):
    """A pool embedded with instruction+input gets queries embedded the same way."""
    r = PIERetriever.from_demonstrations(small_pool, HashingEncoder(dim=64), embed_fields=("instruction", "input"))
    fs = FewShotPromptBuilder(r, k=2).build("Summarize.", "The ocean covers most of the planet.")
    assert [h.id for h in fs.demonstrations] == [h.id for h in r.retrieve("Summarize.\nThe ocean covers most of the planet.", k=2)]


# -- token budget --------------------------------------------------------------------------------------
def _long_pool(n=6, words=40):
    return [
        Demonstration(f"Write a poem number {i} about the sea.", output=" ".join([f"w{i}"] * words), id=f"long{i}")
        for i in range(n)
    ]


def test_budget_drops_lowest_ranked_whole_demonstrations():
    r = PIERetriever.from_demonstrations(_long_pool(), HashingEncoder(dim=64))
    tok = WordTokenizer()
    unlimited = FewShotPromptBuilder(r, k=4, tokenizer=tok).build(QUERY)
    assert len(unlimited.demonstrations) == 4 and unlimited.num_tokens == len(tok.encode(unlimited.prompt))
    full = unlimited.num_tokens
    zero = len(tok.encode(format_few_shot([], QUERY)))
    per_demo = (full - zero) / 4  # every demo has the same length here
    # room for exactly two demonstrations (plus a few tokens, not enough for a third)
    max_tokens = 32
    max_model_len = int(zero + 2 * per_demo + 5) + max_tokens
    builder = FewShotPromptBuilder(r, k=4, tokenizer=tok, max_model_len=max_model_len, max_tokens=max_tokens)
    fs = builder.build(QUERY)
    assert builder.budget == max_model_len - max_tokens
    assert [h.id for h in fs.demonstrations] == [h.id for h in unlimited.demonstrations[:2]]
    assert [h.id for h in fs.dropped] == [h.id for h in unlimited.demonstrations[2:]]
    assert fs.num_tokens == len(tok.encode(fs.prompt)) <= builder.budget
    # never half a demonstration: kept outputs are complete, dropped ones absent
    for h in fs.demonstrations:
        assert h.demonstration.output in fs.prompt
    for h in fs.dropped:
        assert h.demonstration.instruction not in fs.prompt and h.demonstration.output.split()[0] not in fs.prompt
    # a bigger generation budget per call leaves room for fewer demonstrations
    tighter = builder.build(QUERY, max_tokens=max_tokens + int(per_demo))
    assert len(tighter.demonstrations) == 1 and len(tighter.dropped) == 3
    assert tighter.demonstrations[0].rank == 0


def test_budget_chat_counts_with_chat_template():
    r = PIERetriever.from_demonstrations(_long_pool(), HashingEncoder(dim=64))
    tok = WordTokenizer()
    full = FewShotPromptBuilder(r, k=4, tokenizer=tok).build_chat(QUERY)
    assert full.num_tokens == len(tok.apply_chat_template(full.messages)["input_ids"])
    builder = FewShotPromptBuilder(r, k=4, tokenizer=tok, max_model_len=full.num_tokens - 1 + 10, max_tokens=10,
                                   chat_template_kwargs={"enable_thinking": False})
    fs = builder.build_chat(QUERY)
    assert len(fs.demonstrations) == 3 and len(fs.dropped) == 1
    assert fs.num_tokens <= builder.budget and len(fs.messages) == 1 + 2 * 3
    assert tok.last_kwargs == {"enable_thinking": False}


def test_zero_shot_prompt_too_long_is_a_clear_error(retriever):
    builder = FewShotPromptBuilder(retriever, k=2, tokenizer=WordTokenizer(), max_model_len=40, max_tokens=20)
    with pytest.raises(PromptBudgetError, match=r"does not fit even without demonstrations: \d+ tokens, but max_model_len=40 "
                       r"minus max_tokens=20 leaves 20"):
        builder.build(" ".join(["word"] * 30))
    assert issubclass(PromptBudgetError, ValueError)


def test_tokenizer_from_model_alias(retriever):
    builder = FewShotPromptBuilder(retriever, k=2, tokenizer="minilm", max_model_len=512, max_tokens=64)
    fs = builder.build(QUERY)
    assert fs.num_tokens == len(builder.tokenizer.encode(fs.prompt)) and 0 < fs.num_tokens <= 448


# ------------------------------------------------------------------------------------------------------
# PIEGenerator
# ------------------------------------------------------------------------------------------------------
def test_generate_one_engine_call_with_demos(retriever):
    llm = FakeLLM(tokenizer=WordTokenizer(), max_model_len=4096)
    gen = PIEGenerator(llm, retriever, k=2, max_tokens=100)
    assert gen.builder.max_model_len == 4096 and isinstance(gen.builder.tokenizer, WordTokenizer)
    queries = [QUERY, "Summarize the text about taxes.", ("Translate into French.", "Good night.")]
    results = gen.generate(queries, use_tqdm=False)
    assert len(llm.calls) == 1
    kind, prompts, params, kwargs = llm.calls[0]
    assert kind == "generate" and kwargs == {"use_tqdm": False}
    assert prompts == [r.prompt for r in results] and all(isinstance(p, str) for p in prompts)
    # no sampling params: the engine's defaults with max_tokens = the builder's generation budget
    assert params.max_tokens == 100 and params.temperature == 0.7
    assert params.stop == ["\n\n### Instruction:", "### Instruction:"]  # the next Alpaca example would start there
    for r, q in zip(results, queries):
        assert r.text.startswith("generate answer")
        assert len(r.demonstrations) == 2 and r.query == (q if isinstance(q, str) else q[0])
        for h in r.demonstrations:
            assert h.demonstration.instruction in r.prompt
        assert r.texts == [r.text] and r.to_dict()["demonstrations"][0]["id"] == r.demonstrations[0].id
    assert "### Input:\nGood night." in results[2].prompt


def test_chat_one_engine_call(retriever):
    llm = FakeLLM(tokenizer=WordTokenizer(), max_model_len=4096)
    gen = PIEGenerator(llm, retriever, k=2, system_prompt="Be brief.", chat_template_kwargs={"enable_thinking": False})
    results = gen.chat([QUERY, "Summarize the text about taxes."], SimpleNamespace(max_tokens=50))
    assert len(llm.calls) == 1
    kind, conversations, params, kwargs = llm.calls[0]
    assert kind == "chat" and params.max_tokens == 50
    assert kwargs == {"chat_template_kwargs": {"enable_thinking": False}}
    assert len(conversations) == 2 and conversations[0][0] == {"role": "system", "content": "Be brief."}
    assert results[1].prompt is conversations[1] and results[1].few_shot.is_chat
    assert results[0].text == "chat answer 0"


def test_sampling_params_max_tokens_sets_the_budget():
    r = PIERetriever.from_demonstrations(_long_pool(), HashingEncoder(dim=64))
    tok = WordTokenizer()
    full = FewShotPromptBuilder(r, k=4, tokenizer=tok).build(QUERY).num_tokens
    llm = FakeLLM(tokenizer=tok, max_model_len=full + 10)
    gen = PIEGenerator(llm, r, k=4, max_tokens=10)
    small, = gen.generate([QUERY], SimpleNamespace(max_tokens=10))
    big, = gen.generate([QUERY], SimpleNamespace(max_tokens=100))
    assert len(small.demonstrations) == 4 and small.dropped == []
    assert len(big.demonstrations) < 4 and big.few_shot.num_tokens + 100 <= full + 10
    # one sampling-params object per query, each with its own budget
    both = gen.generate([QUERY, QUERY], [SimpleNamespace(max_tokens=10), SimpleNamespace(max_tokens=100)])
    assert [len(x.demonstrations) for x in both] == [4, len(big.demonstrations)]
    with pytest.raises(ValueError, match="Got 1 sampling_params for 2 queries"):
        gen.generate([QUERY, QUERY], [SimpleNamespace(max_tokens=10)])


def test_generator_with_a_minimal_engine(retriever):
    engine = GenerateOnly()
    gen = PIEGenerator(engine, retriever, k=1)
    assert gen.builder.tokenizer is None and gen.builder.max_model_len is None
    out = gen.generate(QUERY)  # a single query is accepted too
    assert out[0].text == "ok" and engine.calls[0][1] is None  # no defaults to copy: the engine decides
    with pytest.raises(TypeError, match="has no chat\\(\\) method"):
        gen.chat([QUERY])


def test_generator_errors(retriever):
    with pytest.raises(TypeError, match="llm must be a vllm.LLM or an object with generate"):
        PIEGenerator(object(), retriever)
    with pytest.raises(ValueError, match="needs a retriever"):
        PIEGenerator(FakeLLM())
    builder = FewShotPromptBuilder(retriever)
    with pytest.raises(ValueError, match="either builder=... or retriever"):
        PIEGenerator(FakeLLM(), retriever, builder=builder)
    assert PIEGenerator(FakeLLM(), builder=builder).builder is builder

    class Broken(FakeLLM):
        def generate(self, prompts, sampling_params=None, **kwargs):
            return []

    with pytest.raises(RuntimeError, match="returned 0 results for 1 prompts"):
        PIEGenerator(Broken(), retriever).generate([QUERY])
    assert PIEGenerator(FakeLLM(), retriever).generate([]) == []


# ------------------------------------------------------------------------------------------------------
# VLLMEncoder with a fake `vllm` module
# ------------------------------------------------------------------------------------------------------
class _FakeEmbedLLM:
    instances: list = []

    def __init__(self, model, runner="generate", pooler_config=None, **kwargs):
        from transformers import AutoTokenizer

        self.model = model
        self.runner = runner
        self.pooler_config = pooler_config
        self.kwargs = kwargs
        self.embed_calls = []
        self._tok = AutoTokenizer.from_pretrained(model)
        self.model_config = SimpleNamespace(max_model_len=kwargs.get("max_model_len"), runner_type=runner,
                                            pooler_config=SimpleNamespace(seq_pooling_type=pooler_config["seq_pooling_type"]),
                                            get_hidden_size=lambda: 8)
        _FakeEmbedLLM.instances.append(self)

    def get_tokenizer(self):
        return self._tok

    def embed(self, prompts, use_tqdm=True, pooling_params=None):
        self.embed_calls.append((prompts, pooling_params))
        out = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            v = np.zeros(8, dtype=np.float32)
            for t in ids:
                v[t % 8] += 1.0
            out.append(SimpleNamespace(outputs=SimpleNamespace(embedding=(v * 3).tolist())))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = _FakeEmbedLLM
    module.PoolingParams = lambda **kw: SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", module)
    _FakeEmbedLLM.instances = []
    return module


def test_missing_vllm_names_the_extra(monkeypatch, retriever):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingDependencyError, match=r'VLLMEncoder needs the optional dependency \'vllm\'.*pie-retriever\[vllm\]'):
        VLLMEncoder("minilm")
    with pytest.raises(MissingDependencyError, match=r"pie-retriever\[vllm\]"):
        PIEGenerator.from_model("smollm2", retriever)
    # the builder and the generator over a user's engine do not need vllm
    assert PIEGenerator(FakeLLM(), retriever).generate([QUERY])[0].text == "generate answer 0"


def test_vllm_encoder_engine_arguments_and_encode(fake_vllm, monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    enc = VLLMEncoder("minilm", max_length=64)
    llm = _FakeEmbedLLM.instances[-1]
    assert llm.runner == "pooling"
    assert llm.pooler_config == {"seq_pooling_type": "LAST", "use_activation": True}
    assert llm.kwargs == {"max_model_len": 64, "dtype": "float32", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30}
    assert enc.dim == 8 and enc.start_seconds is not None
    vecs = enc.encode(["Write a poem.", "Summarize the article."])
    assert vecs.dtype == np.float32 and vecs.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)
    # the PIE prompt was applied and tokenized with special tokens, like TransformerEncoder
    sent = llm.embed_calls[-1][0][0]["prompt_token_ids"]
    tok = llm.get_tokenizer()
    assert tok.decode(sent, skip_special_tokens=True).startswith("the essence of an instruction")
    assert sent[0] == tok.cls_token_id
    assert enc.encode([]).shape == (0, 8)
    with pytest.warns(UserWarning, match="1 of 1 input\\(s\\) were longer than max_length=64"):
        enc.encode([" ".join(["word"] * 100)])
    assert len(llm.embed_calls[-1][0][0]["prompt_token_ids"]) == 64
    with pytest.raises(TypeError, match="encode\\(\\) takes a list"):
        enc.encode("a string")


def test_vllm_encoder_config_round_trip_and_retriever(fake_vllm, small_pool, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    enc = VLLMEncoder("minilm", pooling="mean", max_length=64, swap_space=0)
    assert "kv_cache_memory_bytes" not in _FakeEmbedLLM.instances[-1].kwargs
    cfg = enc.config()
    assert cfg == {"type": "vllm", "model": "minilm", "prompt": enc.prompt, "query_prompt": enc.prompt, "pooling": "mean",
                   "normalize": True, "max_length": 64, "llm_kwargs": {"swap_space": 0}}
    again = encoder_from_config(cfg)
    assert isinstance(again, VLLMEncoder) and again.fingerprint == enc.fingerprint
    assert _FakeEmbedLLM.instances[-1].pooler_config["seq_pooling_type"] == "MEAN"
    assert VLLMEncoder("minilm", pooling="last", max_length=64).fingerprint != enc.fingerprint
    r = PIERetriever.from_demonstrations(small_pool, enc)
    hits = r.retrieve("Write a poem about the ocean.", k=2)
    assert len(hits) == 2
    r.save(tmp_path / "idx")
    loaded = PIERetriever.load(tmp_path / "idx")  # rebuilds the encoder from the manifest
    assert isinstance(loaded.encoder, VLLMEncoder) and loaded.encoder.pooling == "mean"
    assert [h.id for h in loaded.retrieve("Write a poem about the ocean.", k=2)] == [h.id for h in hits]


def test_vllm_encoder_options(fake_vllm):
    with pytest.raises(PIEError, match="pooling='last2' .* is not available through vLLM: its pooler reads the final layer only"):
        VLLMEncoder("minilm", pooling="last2")
    with pytest.raises(ValueError, match="Unknown pooling 'max'; choose one of: last, mean, cls"):
        VLLMEncoder("minilm", pooling="max")
    raw = VLLMEncoder("minilm", normalize=False)
    llm = _FakeEmbedLLM.instances[-1]
    assert llm.pooler_config["use_activation"] is False
    vec = raw.encode(["Write a poem."])
    assert np.linalg.norm(vec) > 1.5  # raw, not normalised
    assert llm.embed_calls[-1][1].use_activation is False
    shared = VLLMEncoder("minilm", llm=llm, normalize=False)
    assert shared.llm is llm and len(_FakeEmbedLLM.instances) == 1
    generate_engine = FakeLLM()
    with pytest.raises(PIEError, match="runs 'generate'; VLLMEncoder needs"):
        VLLMEncoder("minilm", llm=generate_engine)
    with pytest.raises(PIEError, match="pools with 'LAST' but pooling='mean'"):
        VLLMEncoder("minilm", llm=llm, pooling="mean")
    raw.close()
    with pytest.raises(PIEError, match="was closed"):
        raw.encode(["x"])


def test_cpu_llm_kwargs(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert cpu_llm_kwargs() == {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "kv_cache_memory_bytes": 1 << 30}
    assert cpu_llm_kwargs(max_model_len=2048, kv_cache_memory_bytes=5)["kv_cache_memory_bytes"] == 5
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")
    assert "kv_cache_memory_bytes" not in cpu_llm_kwargs()


def test_stop_strings(retriever):
    assert FewShotPromptBuilder(retriever).stop == ["\n\n### Instruction:", "### Instruction:"]
    assert FewShotPromptBuilder(retriever, template="plain").stop == ["\n\nInstruction:", "Instruction:"]
    spec = {"header": "", "example": "Q: {instruction}\n{input_block}A: {output}", "input_block": "{input}\n", "separator": "\n"}
    assert FewShotPromptBuilder(retriever, template=spec).stop == ["\nQ:", "Q:"]
    assert FewShotPromptBuilder(retriever, template=lambda d, q, i: q).stop == []
    llm = FakeLLM()
    user_params = SimpleNamespace(max_tokens=20, stop="END")
    PIEGenerator(llm, retriever).generate([QUERY], user_params)
    assert llm.calls[-1][2].stop == ["END", "\n\n### Instruction:", "### Instruction:"] and user_params.stop == "END"  # a copy is sent
    PIEGenerator(llm, retriever, stop=None).generate([QUERY], user_params)
    assert llm.calls[-1][2] is user_params
    PIEGenerator(llm, retriever, stop=["\n\n"]).generate([QUERY], [user_params])
    assert llm.calls[-1][2][0].stop == ["END", "\n\n"]
    PIEGenerator(llm, retriever).chat([QUERY], user_params)
    assert llm.calls[-1][2] is user_params  # chat: the chat template ends the turn
    with pytest.raises(ValueError, match="stop must be 'auto', None or a list of non-empty strings"):
        PIEGenerator(llm, retriever, stop="###")
