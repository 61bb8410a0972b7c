"""The LangChain snippets run as written, in docs/langchain.md and the README (real default model, bundled pool, offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOC = REPO / "docs" / "langchain.md"


def _blocks(path: Path, section: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {section}:start -->(.*?)<!-- {section}:end -->", text, flags=re.S)
    assert match, f"{path.name} has no {section} section markers"
    return re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)


def _run(path: Path, blocks: list[str]) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    for code in blocks:
        exec(compile(code, str(path), "exec"), namespace)
    return namespace


def test_langchain_snippets_run(tmp_path, monkeypatch, capsys):
    blocks = _blocks(DOC, "langchain")
    assert len(blocks) >= 3, "the LangChain page must show the retriever, the selector and the embeddings"
    joined = "\n".join(blocks)
    for name in ("as_langchain_retriever", "PIEExampleSelector", "PIEEmbeddings", "FewShotChatMessagePromptTemplate"):
        assert name in joined
    monkeypatch.chdir(tmp_path)
    namespace = _run(DOC, blocks)
    out = capsys.readouterr().out
    assert "Instruction: Write a limerick about tax law.\nResponse:" in out  # the few-shot prompt was printed
    assert len(namespace["docs"]) == 3
    assert 'A: {"a": 1}' in namespace["text"]
    assert namespace["messages"][2].content == '{"a": 1}'
    assert len(namespace["store"].similarity_search("Write a poem", k=2)) == 2

    # the README's short example: the retriever and the selector in a FewShotPromptTemplate
    readme = _run(README, _blocks(README, "langchain"))
    assert len(readme["docs"]) == 3
    assert "Instruction: Write a limerick about tax law.\nResponse:" in capsys.readouterr().out
