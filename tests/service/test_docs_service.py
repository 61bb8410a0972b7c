"""docs/service.md runs as shown (the page is in ELSEWHERE of tests/test_docs_snippets.py): its ``pie-retriever``
commands (``serve`` through the harness, on a free port), its Python blocks against that server, and its curl
transcript (same status codes and reply fields as recorded)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from service_harness import READ_KEY, WRITE_KEY, Server

pytestmark = pytest.mark.service

PAGE = Path(__file__).resolve().parents[2] / "docs" / "service.md"
_FENCE = re.compile(r"```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)
DOC_PORT = "http://127.0.0.1:8080"


def _blocks(lang: tuple[str, ...]) -> list[str]:
    return [m.group("body") for m in _FENCE.finditer(PAGE.read_text(encoding="utf-8")) if m.group("lang") in lang]


def _transcript() -> list[tuple[str, str]]:
    """(command, recorded output) pairs of the console block."""
    (block,) = _blocks(("console",))
    pairs: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], ""))
        elif pairs:
            pairs[-1] = (pairs[-1][0], pairs[-1][1] + line + "\n")
    return pairs


def _shape(text: str) -> tuple:
    """What must match between the recorded and the new reply: the trailing status code, JSON keys, hit ids."""
    body, _, code = text.strip().rpartition(" ") if re.search(r" \d{3}$", text.strip()) else (text.strip(), "", "200")
    try:
        data = json.loads(body)
    except ValueError:
        return (code, sorted(line.split(" ")[0].split("{")[0] for line in body.splitlines()))
    ids = [h["id"] for h in data.get("hits", [])] if isinstance(data, dict) else []
    return (code, sorted(data) if isinstance(data, dict) else None, ids)


def test_service_page_runs(tmp_path, monkeypatch, capsys):
    from pie_retriever.cli import main
    from pie_retriever.pool.pools import bundled_pool_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pool.jsonl").write_bytes(bundled_pool_path().read_bytes())
    (tmp_path / "keys.txt").write_text(f"read:{READ_KEY}\nwrite:{WRITE_KEY}\n")
    server = None
    try:
        for block in _blocks(("bash",)):
            for line in block.splitlines():
                argv = shlex.split(line, comments=True)
                if argv[:2] == ["pie-retriever", "serve"]:
                    server = Server(argv[2:], env={"PIE_SERVE_KEYS": ""}).start()
                elif argv[:1] == ["pie-retriever"]:
                    assert main(argv[1:]) == 0, line
        assert server is not None, "the page starts no server"
        monkeypatch.setenv("PIE_READ_KEY", READ_KEY)
        namespace: dict = {"__name__": "__main__"}
        for code in _blocks(("python",)):
            exec(compile(code.replace(DOC_PORT, server.url), str(PAGE), "exec"), namespace)
        printed = capsys.readouterr().out
        assert "write|poem" in printed and "translate" in printed
        recorded_keys = dict(line.split(":", 1) for line in (tmp_path / "keys.txt").read_text().split())
        doc_keys = re.findall(r"Bearer ([rw]-[A-Za-z0-9_-]+)", PAGE.read_text(encoding="utf-8"))
        for cmd, recorded in _transcript():
            for key in set(doc_keys):
                cmd = cmd.replace(key, recorded_keys["read" if key.startswith("r-") else "write"])
            cmd = cmd.replace("http://127.0.0.1:8765", server.url)
            done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (cmd, done.stderr)
            assert _shape(done.stdout) == _shape(recorded), (cmd, done.stdout[:500], recorded[:500])
    finally:
        if server is not None:
            server.stop()
