"""The README's core Python snippet runs as written (with the real default model)."""

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    body = re.search(rf"<!-- {section}:start -->(.*?)<!-- {section}:end -->", text, flags=re.S).group(1)
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_core_snippets_run(tmp_path, monkeypatch):
    blocks = _blocks("core")
    assert blocks, "the core section must contain python snippets"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)
    assert len(namespace["r2"]) == len(namespace["r"]) == 3
    assert namespace["ids"] == ["demo-3"]
    assert os.path.isdir(tmp_path / "pool.pie")
