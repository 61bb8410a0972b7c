"""The core Python snippet runs as written, in the README and in docs/usage.md (with the real default model)."""

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
USAGE = REPO / "docs" / "usage.md"


def _blocks(path: Path, section: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {section}:start -->(.*?)<!-- {section}:end -->", text, flags=re.S)
    assert match, f"{path.name} has no {section} section markers"
    return re.findall(r"```python\n(.*?)```", match.group(1), flags=re.S)


def test_core_snippets_run(tmp_path, monkeypatch):
    for path in (README, USAGE):
        blocks = _blocks(path, "core")
        assert blocks, f"the core section of {path.name} must contain python snippets"
        workdir = tmp_path / path.stem
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        namespace: dict = {}
        for code in blocks:
            exec(compile(code, str(path), "exec"), namespace)
        assert len(namespace["r2"]) == len(namespace["r"]) == 3
        assert namespace["ids"] == ["demo-3"]
        assert os.path.isdir(workdir / "pool.pie")
