"""Real vLLM OpenAI-compatible servers on loopback (marker ``vllm``; ``make test`` runs them in its vllm process).

Two servers per module, started together by the tests and stopped at the end of the module:

* embeddings: ``python -m vllm.entrypoints.openai.api_server --model <pie-minilm exported> --runner pooling``,
  no pooling flag: vLLM reads the folder's modules.json / 1_Pooling (mean) and Normalize;
* generation: the same entry point on the packaged SmolLM2 folder (``--max-model-len 1024``).

An in-process ``vllm.LLM`` on the same SmolLM2 folder, in a fresh Python process, gives the reference answers
for greedy decoding. With ``-s`` the figures are printed.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")]

MAX_MODEL_LEN = 1024


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from pie_retriever import export_model

    return export_model("pie-minilm", tmp_path_factory.mktemp("served") / "pie-minilm")


@pytest.fixture(scope="module")
def servers(exported, tmp_path_factory):
    """Both servers, started at once (their start-ups overlap), stopped at the end of the module."""
    pytest.importorskip("vllm")
    from pie_retriever.encoders.weights.gguf import smollm2_path
    from pie_retriever.integrations.vllm_server import LocalVLLMServer

    logs = tmp_path_factory.mktemp("server-logs")
    embed = LocalVLLMServer(exported, runner="pooling", log_path=logs / "embed.log")
    generate = LocalVLLMServer(smollm2_path(), max_model_len=MAX_MODEL_LEN, log_path=logs / "generate.log")
    try:
        embed.start()
        generate.start()
        embed.wait()
        generate.wait()
        print(f"\nvLLM servers healthy: embeddings {embed.start_seconds:.0f} s, generation {generate.start_seconds:.0f} s")
        yield {"embed": embed, "generate": generate}
    finally:
        embed.stop()
        generate.stop()


@pytest.fixture(scope="module")
def reference_encoder():
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder("pie-minilm", precision="fp32")


@pytest.fixture(scope="module")
def bundled():
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    return load_bundled_pool(), load_bundled_queries()


# ------------------------------------------------------------------------------------------------------
# Embeddings: the exported folder through vLLM's pooling runner, the folder's own pooling config
# ------------------------------------------------------------------------------------------------------
def test_pooling_runner_pools_the_export_by_its_own_config(servers, reference_encoder, bundled):
    from pie_retriever.encoders.server import ServerEncoder

    embed = servers["embed"]
    assert "--pooler-config" not in " ".join(embed.command) and "--runner pooling" in " ".join(embed.command)
    log = embed.log_path.read_text(errors="replace")
    assert "pooling_type=MEAN(source=sentence_transformers)" in log
    assert "use_activation=True(source=sentence_transformers)" in log  # the Normalize module

    encoder = ServerEncoder(embed.model, embed.base_url)
    assert (encoder.pooling, encoder.prompt, encoder.dim) == ("mean", "{instruction}", 384)  # from the served card
    assert encoder.info["max_model_len"] == 256  # sentence_bert_config.json
    pool, queries = bundled
    texts = [d.instruction for d in pool] + [q.instruction for q in queries] + ["word " * 400]  # the last one is truncated
    started = time.perf_counter()
    served = encoder.encode(texts)
    seconds = time.perf_counter() - started
    local = reference_encoder.encode(texts)
    cosine = (served * local).sum(axis=1)
    print(f"server vs in-process (fp32) on {len(texts)} texts: cosine min {cosine.min():.6f} mean {cosine.mean():.6f}; "
          f"{len(texts) / seconds:.0f} texts/s through the server")
    assert cosine.min() >= 0.9999


def test_index_with_the_served_model_saves_and_reloads(servers, reference_encoder, bundled, tmp_path):
    from pie_retriever import PIERetriever
    from pie_retriever.encoders.server import ServerEncoder
    from pie_retriever.errors import EncoderMismatchError

    embed = servers["embed"]
    pool, queries = bundled
    served = PIERetriever.from_demonstrations(pool, ServerEncoder(embed.model, embed.base_url, batch_size=32))
    local = PIERetriever.from_demonstrations(pool, reference_encoder)
    texts = [q.instruction for q in queries]
    served_hits, local_hits = served.retrieve_batch(texts, k=4), local.retrieve_batch(texts, k=4)
    same = np.mean([[h.id for h in a] == [h.id for h in b] for a, b in zip(served_hits, local_hits)])
    p4 = np.mean([[h.demonstration.metadata["task"] == q.metadata["task"] for h in row] for row, q in zip(served_hits, queries)])
    print(f"bundled queries: identical top-4 lists {same:.3f}; task P@4 through the server {p4:.3f}")
    assert same >= 0.95
    served.save(tmp_path / "idx")
    loaded = PIERetriever.load(tmp_path / "idx", allow_remote=True)  # rebuilds the ServerEncoder from the manifest and checks it
    assert loaded.encoder.config()["type"] == "server"
    assert [h.id for h in loaded.retrieve(texts[0], k=4)] == [h.id for h in served_hits[0]]
    with pytest.raises(EncoderMismatchError, match="Encoder mismatch"):  # an index of the served model needs that model
        PIERetriever.load(tmp_path / "idx", encoder=reference_encoder)


# ------------------------------------------------------------------------------------------------------
# Generation: PIEGenerator against the served SmolLM2, checked against the in-process engine
# ------------------------------------------------------------------------------------------------------
_REFERENCE = """
import json, os, sys
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"  # a valid value: an empty one reached vLLM's env parser in CI (int(''))
import torch
torch.set_num_threads(1)
from vllm import LLM, SamplingParams
from pie_retriever.integrations.vllm import cpu_llm_kwargs
prompts, max_tokens, stop, max_model_len, model = json.load(open(sys.argv[1]))
llm = LLM(model=model, **cpu_llm_kwargs(max_model_len=max_model_len))
outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=stop), use_tqdm=False)
json.dump([o.outputs[0].text for o in outs], open(sys.argv[2], "w"))
"""


def in_process_greedy(prompts, max_tokens, stop, tmp_path):
    """Greedy answers of an in-process ``vllm.LLM`` on the same folder, in a fresh Python process: vLLM's kernel
    scan fails in a process that has imported numba (bm25s does), see docs/vllm.md."""
    import json
    import subprocess
    import sys

    from pie_retriever.encoders.weights.gguf import smollm2_path

    args, answers = tmp_path / "reference-in.json", tmp_path / "reference-out.json"
    args.write_text(json.dumps([prompts, max_tokens, stop, MAX_MODEL_LEN, str(smollm2_path())]))
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    done = subprocess.run([sys.executable, "-c", _REFERENCE, str(args), str(answers)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(answers.read_text())


@pytest.fixture(scope="module")
def retriever(reference_encoder, bundled):
    from pie_retriever import PIERetriever

    return PIERetriever.from_demonstrations(bundled[0], reference_encoder)


def test_server_generation_matches_in_process_greedy(servers, retriever, bundled, tmp_path):
    from pie_retriever.integrations.openai_server import OpenAIServerLLM
    from pie_retriever.integrations.vllm import PIEGenerator

    generate = servers["generate"]
    first = {}
    for q in bundled[1]:
        first.setdefault(q.metadata["task"], q)
    queries = [(q.instruction, q.input) for q in list(first.values())[:8]]
    served = PIEGenerator(generate.base_url, retriever, k=3)
    assert isinstance(served.llm, OpenAIServerLLM) and served.builder.max_model_len == MAX_MODEL_LEN
    started = time.perf_counter()
    results = served.generate(queries, {"temperature": 0.0, "max_tokens": 40})
    server_s = time.perf_counter() - started
    # the same prompts and stop strings through an in-process engine on the same folder
    reference = in_process_greedy([r.prompt for r in results], 40, served.stop, tmp_path)
    same = [r.text == ref for r, ref in zip(results, reference)]
    print(f"greedy answers identical for {sum(same)}/{len(same)} prompts (server: {server_s:.1f} s for the batch)")
    assert all(same), [(r.text, ref) for r, ref in zip(results, reference) if r.text != ref]
    # the builder measured the prompts exactly as the server tokenized them (completions usage is the batch sum)
    assert results[0].output.usage["prompt_tokens"] == sum(r.few_shot.num_tokens for r in results)


def test_server_chat_budget_and_openai_client(servers, retriever, bundled):
    openai = pytest.importorskip("openai")
    from pie_retriever.integrations.vllm import PIEGenerator

    generate = servers["generate"]
    client = openai.OpenAI(base_url=generate.base_url, api_key="unused")
    gen = PIEGenerator(client, retriever, model=generate.model, k=2, system_prompt="Answer like the examples.")
    results = gen.chat([q.instruction for q in bundled[1][:3]], {"temperature": 0.0, "max_tokens": 24})
    for r in results:
        assert r.text.strip() and r.prompt[-1]["role"] == "user"
        assert r.output.usage["prompt_tokens"] == r.few_shot.num_tokens  # chat template counted exactly
    # a generation budget that leaves little room: demonstrations are dropped, and the server accepts the prompt
    long = PIEGenerator(generate.base_url, retriever, k=4)
    fs_result, = long.generate([("Summarize the text.", "Volcanoes form where magma reaches the surface. " * 70)],
                               {"temperature": 0.0, "max_tokens": 256})
    assert fs_result.dropped and fs_result.few_shot.num_tokens + 256 <= MAX_MODEL_LEN
    assert fs_result.output.usage["prompt_tokens"] == fs_result.few_shot.num_tokens


def test_clear_error_when_the_server_is_down(servers, retriever):
    from pie_retriever.errors import ServerError
    from pie_retriever.integrations.vllm import PIEGenerator
    from pie_retriever.integrations.vllm_server import free_port

    with pytest.raises(ServerError, match=r"Cannot reach the server at http://127\.0\.0\.1:\d+/v1 .*Connection refused"):
        PIEGenerator(f"http://127.0.0.1:{free_port()}/v1", retriever, server_options={"max_retries": 1, "backoff": 0.05})


# ------------------------------------------------------------------------------------------------------
# docs/serving.md runs as written: the export command, the two server command lines (the ones these servers
# were started with, up to the port and the folder), then every Python block against these servers
# ------------------------------------------------------------------------------------------------------
def _blocks(text: str, lang: str) -> list[str]:
    import re

    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _server_flags(line: str) -> dict[str, str | bool]:
    import shlex

    args = shlex.split(line)
    assert args[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"], line
    flags: dict[str, str | bool] = {}
    it = iter(args[3:])
    for arg in it:
        flags[arg] = True if arg == "--enforce-eager" else next(it)
    return flags


def test_docs_serving_snippets_run(servers, exported, tmp_path, monkeypatch, capsys):
    import json
    import re
    from pathlib import Path

    from pie_retriever.cli import main
    from pie_retriever.encoders.weights.gguf import smollm2_path

    repo = Path(__file__).resolve().parents[2]
    page = (repo / "docs" / "serving.md").read_text(encoding="utf-8")
    section = re.search(r"<!-- serving:start -->(.*?)<!-- serving:end -->", page, flags=re.S).group(1)
    bash = [line for block in _blocks(section, "bash") for line in block.splitlines() if line.strip() and not line.startswith("export ")]
    assert bash[0].split("#")[0].split() == ["pie-retriever", "export", "pie-minilm", "-o", "exported/pie-minilm"]
    monkeypatch.chdir(tmp_path)
    assert main(bash[0].split()[1:]) == 0  # the documented export, here: the same files as the served folder's
    digest = json.loads((tmp_path / "exported" / "pie-minilm" / "pie_export.json").read_text())["fingerprint"]
    assert digest == json.loads((exported / "pie_export.json").read_text())["fingerprint"]
    smollm2_cmd = "$(python -c 'from pie_retriever.encoders.weights.gguf import smollm2_path; print(smollm2_path())')"
    for line, server, model in ((bash[1], servers["embed"], "exported/pie-minilm"), (bash[2], servers["generate"], smollm2_cmd)):
        documented, ran = _server_flags(line), _server_flags("python " + " ".join(server.command[1:]))
        assert documented.pop("--model") == model and ran.pop("--model") == server.model
        assert documented.pop("--port") in ("8001", "8002") and ran.pop("--port") == str(server.port)
        assert documented == ran, (documented, ran)
    assert servers["generate"].model == str(smollm2_path())

    namespace: dict = {"__name__": "__main__"}
    for code in _blocks(section, "python"):
        code = (code.replace("http://127.0.0.1:8001/v1", servers["embed"].base_url)
                    .replace("http://127.0.0.1:8002/v1", servers["generate"].base_url)
                    .replace('"exported/pie-minilm"', repr(str(exported))))
        exec(compile(code, "docs/serving.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "mean {instruction} 384" in out
    assert namespace["again"].encoder.fingerprint == namespace["encoder"].fingerprint and (tmp_path / "pool-served" / "manifest.json").is_file()
    assert len(namespace["results"]) == 2 and all(r.text.strip() for r in namespace["results"])
    assert namespace["chats"][0].text.strip()
