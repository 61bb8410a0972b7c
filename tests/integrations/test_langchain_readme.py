"""The README's LangChain snippets run as written (real default model, bundled pool, offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {section}:start -->(.*?)<!-- {section}:end -->", text, flags=re.S)
    assert match, f"README.md has no {section} section markers"
    return re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)


def test_langchain_snippets_run(tmp_path, monkeypatch, capsys):
    blocks = _blocks("langchain")
    assert len(blocks) >= 3, "the LangChain section must show the retriever, the selector and the embeddings"
    joined = "\n".join(blocks)
    for name in ("as_langchain_retriever", "PIEExampleSelector", "PIEEmbeddings", "FewShotChatMessagePromptTemplate"):
        assert name in joined
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "Instruction: Write a limerick about tax law.\nResponse:" in out  # the few-shot prompt was printed
    assert len(namespace["docs"]) == 3
    assert 'A: {"a": 1}' in namespace["text"]
    assert namespace["messages"][2].content == '{"a": 1}'
    assert len(namespace["store"].similarity_search("Write a poem", k=2)) == 2
