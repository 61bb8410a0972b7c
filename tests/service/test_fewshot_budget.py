"""``token_budget`` with a server ``--tokenizer``: the prompt kept within the budget is exactly what
``FewShotPromptBuilder`` keeps in Python with the same tokenizer. (A chat prompt needs a tokenizer with a chat
template; MiniLM's has none, so the server answers 422, as the builder raises.)"""

from __future__ import annotations

import shutil

import pytest
from service_harness import Server

pytestmark = pytest.mark.service

QUERY = "Write a limerick about a dog"
TOKENIZER = "minilm"  # the packaged all-MiniLM-L6-v2 folder: its tokenizer counts the tokens


def test_token_budget_matches_the_builder(built_index, tmp_path):
    pytest.importorskip("transformers")
    from pie_retriever import PIERetriever
    from pie_retriever.prompting.builder import FewShotPromptBuilder

    folder = tmp_path / "pool"
    shutil.copytree(built_index, folder)
    server = Server([folder], "--tokenizer", TOKENIZER).start()
    try:
        with server.client() as c:
            text = c.post("/v1/indexes/pool/fewshot", json={"query": QUERY, "k": 6, "token_budget": 120}).json()
            chat = c.post("/v1/indexes/pool/fewshot", json={"query": QUERY, "k": 6, "token_budget": 120, "format": "chat"})
            small = c.post("/v1/indexes/pool/fewshot", json={"query": QUERY, "k": 6, "token_budget": 3})
    finally:
        server.stop()
    builder = FewShotPromptBuilder(PIERetriever.load(built_index), k=6, tokenizer=TOKENIZER, max_model_len=120, max_tokens=0)
    built = builder.build(QUERY)
    assert text["prompt"] == built.prompt and text["num_tokens"] == built.num_tokens <= 120
    assert text["ids"] == [h.demonstration.id for h in built.demonstrations]
    assert text["dropped_ids"] == [h.demonstration.id for h in built.dropped] and text["dropped_ids"], "the budget dropped nothing"
    assert chat.status_code == 422 and "chat_template" in chat.text
    assert small.status_code == 422, small.text  # the query alone does not fit
