"""PIEGenerator over an OpenAI-compatible server, against a tiny local fake (fast; the real vLLM server is in
test_server_real.py): one completions request per batch, chat requests per conversation, stop strings, the
token budget through /tokenize, the openai client path, and clear errors when the server is down or fails."""

from __future__ import annotations

import pytest
from fake_openai_server import FakeServer, closed_port_url

from pie_retriever.errors import ConfigError, ServerError, UnknownModelError
from pie_retriever.integrations.openai_server import OpenAIServerLLM, ServerTokenizer, sampling_body
from pie_retriever.integrations.vllm import PIEGenerator

FAST = {"max_retries": 1, "backoff": 0.01, "timeout": 5.0}


@pytest.fixture
def server():
    fake = FakeServer(model="tiny-llm", root=None, max_model_len=400)
    yield fake
    fake.close()


@pytest.fixture
def pool(small_pool, fake_encoder):
    from pie_retriever import PIERetriever

    return PIERetriever.from_demonstrations(small_pool, fake_encoder)


def test_generate_is_one_request_with_stop_strings_and_budget(server, pool):
    gen = PIEGenerator(server.base_url, pool, model="tiny-llm", k=2, server_options=FAST)
    assert isinstance(gen.llm, OpenAIServerLLM)
    assert isinstance(gen.builder.tokenizer, ServerTokenizer)  # not a local folder: vLLM's /tokenize counts
    assert gen.builder.max_model_len == 400  # from GET /v1/models
    server.requests.clear()
    results = gen.generate(["Write a poem about cats.", ("Translate into French.", "Hello.")], {"temperature": 0, "max_tokens": 16})
    bodies = server.posts("/v1/completions")
    assert len(bodies) == 1 and len(bodies[0]["prompt"]) == 2  # ONE request for the batch
    body = bodies[0]
    assert body["model"] == "tiny-llm" and body["max_tokens"] == 16 and body["temperature"] == 0
    assert body["stop"] == ["\n\n### Instruction:", "### Instruction:"]  # the template's stop strings
    assert [r.text for r in results] == [f" answer 0.0 to {len(body['prompt'][0].split())} words",
                                         f" answer 1.0 to {len(body['prompt'][1].split())} words"]
    for r, prompt in zip(results, body["prompt"]):
        assert r.prompt == prompt and len(r.demonstrations) == 2
        assert r.few_shot.num_tokens == 1 + len(prompt.split())  # measured by the server's tokenizer
    assert r.output.outputs[0].finish_reason == "stop"


def test_budget_drops_demonstrations_when_the_context_is_small(server, pool):
    server.max_model_len = 60
    gen = PIEGenerator(server.base_url, pool, model="tiny-llm", k=4, max_tokens=20, server_options=FAST)
    fs = gen.builder.build("Write a poem about the ocean.")
    assert fs.num_tokens <= 40 and fs.dropped


def test_sampling_params_object_and_per_query_params(server, pool):
    from types import SimpleNamespace

    sp = SimpleNamespace(temperature=0.0, top_p=1.0, max_tokens=8, stop=None, seed=3, n=2, top_k=-1,
                         repetition_penalty=1.0, min_tokens=0, presence_penalty=0.0, frequency_penalty=0.0)
    assert sampling_body(sp) == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 3, "n": 2,
                                 "presence_penalty": 0.0, "frequency_penalty": 0.0}  # vLLM-only fields at default: not sent
    llm = OpenAIServerLLM("tiny-llm", server.base_url, **FAST)
    server.requests.clear()
    outs = llm.generate(["a b", "c"], sp)
    assert len(server.posts("/v1/completions")) == 1
    assert [[o.text for o in out.outputs] for out in outs] == [[" answer 0.0 to 2 words", " answer 0.1 to 2 words"],
                                                               [" answer 1.0 to 1 words", " answer 1.1 to 1 words"]]
    server.requests.clear()
    outs = llm.generate(["a", "b", "c"], [{"max_tokens": 4}, {"max_tokens": 9}, {"max_tokens": 4}])
    assert sorted(len(b["prompt"]) for b in server.posts("/v1/completions")) == [1, 2]  # one request per distinct params
    assert [o.prompt for o in outs] == ["a", "b", "c"]


def test_chat_one_request_per_conversation(server, pool):
    gen = PIEGenerator(server.base_url, pool, k=2, system_prompt="Be brief.", server_options=FAST)  # the only served model
    assert gen.llm.model == "tiny-llm"
    server.requests.clear()
    results = gen.chat(["Write a poem about cats.", "Summarize the text."], {"temperature": 0, "max_tokens": 8},
                       chat_template_kwargs={"enable_thinking": False})
    bodies = server.posts("/v1/chat/completions")
    assert len(bodies) == 2 and all("stop" not in b for b in bodies)  # the chat template ends the turn
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)
    assert sorted(r.text for r in results) == ["echo: Summarize the text.", "echo: Write a poem about cats."]
    assert results[0].prompt[0] == {"role": "system", "content": "Be brief."}


def test_openai_client_and_local_tokenizer(server, pool):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="k")
    gen = PIEGenerator(client, pool, model="tiny-llm", tokenizer="minilm", max_model_len=512, k=1)
    assert not isinstance(gen.builder.tokenizer, ServerTokenizer) and gen.builder.tokenizer.name_or_path.endswith("model")
    result, = gen.generate(["Write a poem."], {"max_tokens": 5, "temperature": 0})
    assert result.text.startswith(" answer 0.0")


def test_errors_are_clear(server, pool):
    with pytest.raises(ServerError, match=r"Cannot reach the server at .*Connection refused; 2 attempts.*api_server"):
        PIEGenerator(closed_port_url(), pool, model="x", server_options=FAST)
    with pytest.raises(UnknownModelError, match=r"does not serve model 'big-llm'; it serves: 'tiny-llm'"):
        PIEGenerator(server.base_url, pool, model="big-llm", server_options=FAST)
    gen = PIEGenerator(server.base_url, pool, model="tiny-llm", server_options=FAST)
    server.fail_status, server.fail_times = 503, -1
    with pytest.raises(ServerError, match=r"answered HTTP 503 to POST http://127\.0\.0\.1:\d+/tokenize \(2 attempts.*injected failure 503"):
        gen.generate(["Write a poem."], {"max_tokens": 4})
    server.fail_status = None
    with pytest.raises(ConfigError, match="Unknown arguments for a server request"):
        gen.generate(["Write a poem."], {"max_tokens": 4}, bogus=1)
    with pytest.raises(ConfigError, match="model= and server_options= are for a served model"):
        PIEGenerator(gen.llm, pool, model="tiny-llm")
    gen.generate(["Write a poem."], {"max_tokens": 4}, use_tqdm=False)  # an engine-only argument is ignored
