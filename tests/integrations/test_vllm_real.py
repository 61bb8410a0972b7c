"""Real vLLM engines on CPU (marker ``vllm``; ``make test`` runs them, ``make test-fast`` skips them).

One generate engine and one pooling engine per test session, both on SmolLM2-135M-Instruct converted once
from the packaged GGUF (``pie_retriever.encoders.weights.gguf.smollm2_path``). Settings (see docs/vllm_notes.md):

* ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (unless already set): the engine runs inside the pytest process.
  That starts in ~10 s instead of 50-80 s (no EngineCore/Worker processes to spawn, which would re-import
  torch and vLLM), needs no ``spawn``/``__main__`` guard under pytest, and lets both engines share the process.
* torch is limited to one thread while the engines live (in-process vLLM does not bind threads itself, and two
  OpenMP threads on a loaded 2-core machine made decoding ~8x slower); restored at the end of the session.
* ``VLLM_CPU_KVCACHE_SPACE=1`` (1 GiB KV cache per engine), ``dtype="float32"``, ``max_model_len=1024``,
  ``enforce_eager=True``.

Start times are printed in the terminal summary ("vLLM engines"), with or without ``-s``.
"""

from __future__ import annotations

import collections
import gc
import os
import time

import numpy as np
import pytest

pytestmark = pytest.mark.vllm

MAX_MODEL_LEN = 1024


class _StartTimes:
    """A pytest plugin registered by the session fixtures: prints what was timed in the terminal summary."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.lines:
            terminalreporter.write_sep("-", "vLLM engines (SmolLM2-135M-Instruct, CPU)")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def start_times(request):
    plugin = _StartTimes()
    request.config.pluginmanager.register(plugin, "pie-retriever-vllm-start-times")
    return plugin


@pytest.fixture(scope="session")
def vllm_session(start_times):
    """Environment for in-process engines; yields the imported ``vllm`` module."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch

    threads = torch.get_num_threads()
    # The CPU worker replaces torch.set_num_threads with a no-op for the whole process: keep the original.
    set_num_threads = torch.set_num_threads
    in_process = os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    if in_process:
        torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        import vllm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"vllm is not importable ({exc}); install it with `make install-vllm` (scripts/install_vllm.sh)")
    start_times.lines.append(
        f"vllm {vllm.__version__}, torch {torch.__version__}; mode: "
        f"{'in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0), torch threads 1' if in_process else 'multiprocess'}; "
        f"import vllm {time.perf_counter() - started:.1f} s"
    )
    yield vllm
    torch.set_num_threads = set_num_threads
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smollm2_dir(vllm_session, start_times):
    from pie_retriever.encoders.weights.gguf import smollm2_path

    started = time.perf_counter()
    path = smollm2_path()
    start_times.lines.append(f"SmolLM2 folder from the packaged GGUF: {time.perf_counter() - started:.1f} s ({path})")
    return path


def _shutdown(llm) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


@pytest.fixture(scope="session")
def llm(vllm_session, smollm2_dir, start_times):
    """THE generate engine of the session."""
    from pie_retriever.integrations.vllm import cpu_llm_kwargs

    started = time.perf_counter()
    engine = vllm_session.LLM(model=str(smollm2_dir), **cpu_llm_kwargs(max_model_len=MAX_MODEL_LEN))
    seconds = time.perf_counter() - started
    start_times.lines.append(f"generate engine start: {seconds:.1f} s (max_model_len={MAX_MODEL_LEN}, float32, enforce_eager)")
    yield engine
    _shutdown(engine)
    del engine
    gc.collect()


@pytest.fixture(scope="session")
def vllm_encoder(vllm_session, smollm2_dir, start_times):
    """THE pooling engine of the session (coexists with the generate engine; see docs/vllm_notes.md)."""
    from pie_retriever.integrations.vllm import VLLMEncoder

    encoder = VLLMEncoder("smollm2", pooling="last")
    start_times.lines.append(f"pooling engine start (VLLMEncoder): {encoder.start_seconds:.1f} s")
    yield encoder
    encoder.close()


@pytest.fixture(scope="session")
def bundled_retriever(_minilm_session):
    from pie_retriever import PIERetriever
    from pie_retriever.pool.pools import load_bundled_pool

    return PIERetriever.from_demonstrations(load_bundled_pool(), _minilm_session)


@pytest.fixture(scope="session")
def bundled_queries():
    from pie_retriever.pool.pools import load_bundled_queries

    return load_bundled_queries()


class Spy:
    """Delegates to an engine and counts generate/chat calls."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.calls: collections.Counter = collections.Counter()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, *args, **kwargs):
        self.calls["generate"] += 1
        return self._engine.generate(*args, **kwargs)

    def chat(self, *args, **kwargs):
        self.calls["chat"] += 1
        return self._engine.chat(*args, **kwargs)


def _greedy(vllm, max_tokens):
    return vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens)


def _show(result) -> str:
    demos = "\n".join(f"  #{h.rank} {h.score:.3f} [{h.demonstration.metadata.get('task')}] {h.demonstration.instruction}"
                      for h in result.demonstrations)
    return f"QUERY: {result.query}\nDEMOS:\n{demos}\nOUTPUT: {result.text!r}"


# ------------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------------
def test_generate_with_retrieved_demonstrations(vllm_session, llm, bundled_retriever, bundled_queries):
    from pie_retriever.integrations.vllm import PIEGenerator

    spy = Spy(llm)
    gen = PIEGenerator(spy, bundled_retriever, k=3)
    assert gen.builder.max_model_len == MAX_MODEL_LEN  # read from the engine
    first = {}
    for q in bundled_queries:
        first.setdefault(q.metadata["task"], q)
    picked = [first["write|poem"], first["translate|sentence"], first["extract|name"]]  # the last one has an input
    queries = [{"instruction": q.instruction, "input": q.input} for q in picked]
    results = gen.generate(queries, _greedy(vllm_session, 40), use_tqdm=False)
    assert spy.calls == {"generate": 1}
    assert len(results) == len(queries)
    for r, q in zip(results, picked):
        print(_show(r))
        assert len(r.demonstrations) == 3 and r.dropped == []
        for h in r.demonstrations:  # the prompt holds every retrieved demonstration, whole
            assert h.demonstration.instruction in r.prompt and h.demonstration.output in r.prompt
        assert r.prompt.endswith(f"### Instruction:\n{q.instruction}\n\n" + (f"### Input:\n{q.input}\n\n" if q.input else "") + "### Response:\n")
        assert r.text.strip(), "the model generated nothing"
        # the builder measured the prompt exactly as vLLM tokenized it
        assert len(r.output.prompt_token_ids) == r.few_shot.num_tokens
    # the same task's demonstrations were picked for the translation query (MiniLM retrieval on the bundled pool)
    assert any(h.demonstration.metadata["task"] == "translate|sentence" for h in results[1].demonstrations)
    # greedy decoding is deterministic: the same batch gives the same texts
    again = gen.generate(queries, _greedy(vllm_session, 40), use_tqdm=False)
    assert [r.text for r in again] == [r.text for r in results]


def test_chat_with_retrieved_demonstrations(vllm_session, llm, bundled_retriever, bundled_queries):
    from pie_retriever.integrations.vllm import PIEGenerator

    spy = Spy(llm)
    gen = PIEGenerator(spy, bundled_retriever, k=2, system_prompt="Answer like the examples, briefly.")
    queries = [bundled_queries[0].instruction, bundled_queries[5].instruction]
    results = gen.chat(queries, _greedy(vllm_session, 32), use_tqdm=False)
    assert spy.calls == {"chat": 1}
    for r in results:
        print(_show(r))
        msgs = r.prompt
        assert msgs[0] == {"role": "system", "content": "Answer like the examples, briefly."}
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]
        assert msgs[-1]["content"] == r.query
        assert msgs[-2]["content"] == r.demonstrations[0].demonstration.output  # most similar last
        assert r.text.strip()
        assert len(r.output.prompt_token_ids) == r.few_shot.num_tokens


# ------------------------------------------------------------------------------------------------------
# Token budget
# ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_retriever():
    """Five demonstrations of ~260 SmolLM2 tokens each: four of them do not fit in 1,024 tokens with the answer."""
    from pie_retriever import PIERetriever
    from pie_retriever.encoders.hashing import HashingEncoder

    words = "the quick brown fox jumps over the lazy dog while the river keeps running to the sea".split()
    demos = []
    for i in range(5):
        story = " ".join(words[(j + i) % len(words)] for j in range(230))
        demos.append({"id": f"story-{i}", "instruction": f"Write a long story about a fox, version {i}.", "output": story})
    return PIERetriever.from_demonstrations(demos, HashingEncoder(dim=64))


def test_token_budget_drops_lowest_ranked_demonstrations(vllm_session, llm, long_retriever):
    from pie_retriever.integrations.vllm import FewShotPromptBuilder, PIEGenerator

    query = "Write a long story about a fox and a river."
    tokenizer = llm.get_tokenizer()
    unbounded = FewShotPromptBuilder(long_retriever, k=4, tokenizer=tokenizer).build(query)
    assert unbounded.num_tokens > MAX_MODEL_LEN  # four demonstrations do not even fit the context

    # Without the budget vLLM rejects the prompt outright.
    with pytest.raises(Exception, match=r"maximum context length is 1024 tokens"):
        llm.generate([unbounded.prompt], _greedy(vllm_session, 16), use_tqdm=False)

    spy = Spy(llm)
    gen = PIEGenerator(spy, long_retriever, k=4)
    result, = gen.generate([query], _greedy(vllm_session, 64), use_tqdm=False)
    fs = result.few_shot
    print(f"kept {[h.id for h in fs.demonstrations]}, dropped {[h.id for h in fs.dropped]}, "
          f"{fs.num_tokens} prompt tokens + 64 <= {MAX_MODEL_LEN}")
    assert spy.calls == {"generate": 1}
    assert 0 < len(fs.demonstrations) < 4 and len(fs.demonstrations) + len(fs.dropped) == 4
    # the lowest-ranked ones were dropped, whole
    assert [h.id for h in fs.demonstrations] == [h.id for h in unbounded.demonstrations[: len(fs.demonstrations)]]
    assert [h.id for h in fs.dropped] == [h.id for h in unbounded.demonstrations[len(fs.demonstrations):]]
    for h in fs.demonstrations:
        assert h.demonstration.output in fs.prompt
    for h in fs.dropped:
        assert h.demonstration.instruction not in fs.prompt
    assert fs.num_tokens + 64 <= MAX_MODEL_LEN
    assert len(result.output.prompt_token_ids) == fs.num_tokens
    # the largest prompt that fits: adding the next demonstration back would overflow the budget
    one_more = gen.builder.render(unbounded.demonstrations[: len(fs.demonstrations) + 1], query)
    assert gen.builder.count_tokens(one_more) + 64 > MAX_MODEL_LEN

    # the same for chat; a larger generation budget keeps fewer demonstrations
    chat, = gen.chat([query], _greedy(vllm_session, 300), use_tqdm=False)
    assert len(chat.demonstrations) < len(fs.demonstrations)
    assert chat.few_shot.num_tokens + 300 <= MAX_MODEL_LEN
    assert len(chat.output.prompt_token_ids) == chat.few_shot.num_tokens
    assert spy.calls == {"generate": 1, "chat": 1}


def test_zero_shot_prompt_that_cannot_fit(vllm_session, llm, long_retriever):
    from pie_retriever.integrations.vllm import PIEGenerator, PromptBudgetError

    gen = PIEGenerator(llm, long_retriever, k=2)
    with pytest.raises(PromptBudgetError, match="does not fit even without demonstrations"):
        gen.generate(["Summarize: " + "word " * 1200], _greedy(vllm_session, 16), use_tqdm=False)


# ------------------------------------------------------------------------------------------------------
# PIE embeddings through vLLM's pooling runner
# ------------------------------------------------------------------------------------------------------
INSTRUCTIONS = [
    "Write a haiku about the autumn rain.",
    "Translate 'good morning' into Italian.",
    "Summarize the following paragraph in one sentence.",
    "Classify the sentiment of this review as positive or negative.",
    "List three benefits of drinking water.",
]


def test_vllm_encoder_matches_transformers_last_pooling(vllm_encoder):
    from pie_retriever.encoders.transformer import TransformerEncoder

    vecs = vllm_encoder.encode(INSTRUCTIONS)
    assert vecs.shape == (5, 576) and vecs.dtype == np.float32 and vllm_encoder.dim == 576
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    reference = TransformerEncoder("smollm2", pooling="last", precision="fp32")
    ref = reference.encode(INSTRUCTIONS)
    cosine = (vecs * ref).sum(axis=1)
    print(f"cosine(vLLM last, transformers last) per instruction: {np.round(cosine, 6).tolist()}")
    assert cosine.min() > 0.999
    del reference
    gc.collect()


def test_vllm_encoder_in_a_retriever_and_generation(vllm_session, vllm_encoder, llm, bundled_queries, tmp_path):
    """Both engines alive: the pool is embedded by the pooling engine, the answer comes from the generate engine."""
    from pie_retriever import PIERetriever
    from pie_retriever.integrations.vllm import PIEGenerator
    from pie_retriever.pool.pools import load_bundled_pool

    pool = load_bundled_pool()
    started = time.perf_counter()
    retriever = PIERetriever.from_demonstrations(pool, vllm_encoder)
    print(f"embedded {len(pool)} demonstrations with vLLM in {time.perf_counter() - started:.1f} s")
    queries = [q.instruction for q in bundled_queries]
    hits = retriever.retrieve_batch(queries, k=4)
    p_at_4 = np.mean([[h.demonstration.metadata["task"] == q.metadata["task"] for h in row]
                      for row, q in zip(hits, bundled_queries)])
    print(f"task P@4 of SmolLM2 PIE last-token embeddings (vLLM) on the bundled queries: {p_at_4:.3f}")
    assert p_at_4 > 1 / 30 * 3  # well above chance (30 tasks)

    retriever.save(tmp_path / "pool")
    loaded = PIERetriever.load(tmp_path / "pool", encoder=vllm_encoder)
    assert [h.id for h in loaded.retrieve(queries[0], k=4)] == [h.id for h in hits[0]]
    assert loaded.encoder.config()["type"] == "vllm"

    result, = PIEGenerator(llm, retriever, k=2).generate([queries[0]], _greedy(vllm_session, 24), use_tqdm=False)
    print(_show(result))
    assert result.text.strip() and len(result.demonstrations) == 2


# ------------------------------------------------------------------------------------------------------
# The vLLM snippets of docs/vllm.md and the README run as written (the session engines stand in for the
# LLM(...) they start)
# ------------------------------------------------------------------------------------------------------
def _python_blocks(path, section: str) -> list[str]:
    import re

    section_match = re.search(rf"<!-- {section}:start -->(.*?)<!-- {section}:end -->", path.read_text(encoding="utf-8"), flags=re.S)
    assert section_match, f"{path.name} has no {section} section markers"
    return re.findall(r"```python\n(.*?)```", section_match.group(1), flags=re.S)


def test_readme_vllm_snippets_run(vllm_session, llm, vllm_encoder, monkeypatch, tmp_path, capsys):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    blocks = _python_blocks(repo / "docs" / "vllm.md", "vllm")
    joined = "\n".join(blocks)
    for name in ("PIEGenerator", "gen.generate", "gen.chat", "FewShotPromptBuilder", "VLLMEncoder"):
        assert name in joined

    started = []

    def session_engine(model, runner="generate", **kwargs):
        started.append((runner, kwargs))
        assert kwargs.get("dtype") == "float32" and kwargs.get("enforce_eager") is True
        return vllm_encoder.llm if runner == "pooling" else llm

    monkeypatch.setattr(vllm_session, "LLM", session_engine)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for code in blocks:
        exec(compile(code, "docs/vllm.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert [r for r, _ in started] == ["generate", "pooling"]
    assert len(namespace["results"]) == 2 and all(r.text.strip() for r in namespace["results"])
    assert "### Instruction:\nWrite a haiku about trains.\n\n### Response:\n" in out
    assert namespace["chats"][0].prompt[-1] == {"role": "user", "content": "Write a haiku about trains."}
    fs = namespace["fs"]
    assert fs.dropped and fs.num_tokens <= 1024 - 256
    assert (tmp_path / "pool-vllm" / "manifest.json").is_file()

    # the README's short example: one generation with task-matched demonstrations
    readme: dict = {"__name__": "__main__"}
    for code in _python_blocks(repo / "README.md", "vllm"):
        exec(compile(code, "README.md", "exec"), readme)
    assert [r for r, _ in started] == ["generate", "pooling", "generate"]
    assert readme["result"].text.strip() and len(readme["result"].demonstrations) == 3
