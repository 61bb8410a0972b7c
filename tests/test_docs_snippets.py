"""Every ```python block and every `pie-retriever` command line of README.md and docs/*.md runs as shown.

Collection: a ```python block, or a ```bash / ```console block, is a snippet; in the latter, the lines that start
with ``pie-retriever`` (or ``$ pie-retriever``; ``\\`` continues a line) are the commands that run. Other shell
lines (``pip install``, ``make``) are counted as not run: they install or take the whole suite.

Convention: an HTML comment right before a block routes it to a marker or says why it does not run here:

- ``<!-- snippet: slow -->``: runs under ``-m slow`` (a real training run, a full IEB file);
- ``<!-- snippet: vllm -->``: needs a vLLM engine: the README's block runs as a script in its own process under
  ``-m vllm``; the engine blocks of docs/vllm.md run in ``tests/integrations/test_vllm_real.py`` (one engine for
  all of them);
- ``<!-- snippet: manual: REASON -->``: not run by the suite (e.g. a 15-minute training); the reason is printed.

Pages whose blocks another test runs against the servers or files it starts are listed in ``ELSEWHERE``.
Blocks of a page run in order, in one Python namespace (``__name__ == "__main__"``) and one fresh folder that
holds ``pool.jsonl`` and ``queries.jsonl`` (the bundled pool and queries) and ``ieb/`` (the IEB files). A command
line runs in-process through ``pie_retriever.cli.main`` unless it uses a shell operator (``|``, ``>``, ``;``,
``&&``), then through bash; either way it must exit 0. ``test_snippet_inventory`` prints the counts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TAGS = ("fast", "slow", "vllm", "manual")
# pages whose snippets run in another test (against servers or engines that test starts)
ELSEWHERE = {
    "docs/serving.md": "tests/integrations/test_server_real.py",
    "docs/service.md": "tests/service/test_docs_service.py",
    "docs/speed.md": "tests/encoders/test_speed_doc.py",
    "docs/vllm.md": "tests/integrations/test_vllm_real.py",
}
_FENCE = re.compile(r"(?:<!--\s*snippet:\s*(?P<tag>[a-z]+)(?::\s*(?P<why>[^>]*?))?\s*-->\s*\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)
_SHELL_OPS = {"|", "||", ">", ">>", "<", ";", "&&", "&"}


@dataclass
class Snippet:
    page: str
    line: int
    lang: str
    tag: str
    why: str
    code: str  # python source, or one command line

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _commands(body: str) -> tuple[list[str], int]:
    """The `pie-retriever` lines of a shell block (continuations joined) and the number of other lines."""
    joined = re.sub(r"\\\n\s*", " ", body)
    cmds, others = [], 0
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if line.startswith("pie-retriever ") or line == "pie-retriever":
            cmds.append(line)
        elif line and not line.startswith("#"):
            others += 1
    return cmds, others


def collect() -> tuple[list[Snippet], dict[str, int]]:
    snippets: list[Snippet] = []
    not_run = {"shell lines that are not pie-retriever commands": 0, "blocks in other languages": 0}
    for path in PAGES:
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            tag, why, lang = m.group("tag") or "fast", (m.group("why") or "").strip(), m.group("lang")
            assert tag in TAGS, f"{rel}:{line}: unknown snippet tag {tag!r}; use one of {TAGS}"
            if rel in ELSEWHERE and tag == "fast":
                tag, why = "elsewhere", ELSEWHERE[rel]
            if lang == "python":
                snippets.append(Snippet(rel, line, "python", tag, why, m.group("body")))
            elif lang in ("bash", "console", "sh", "shell"):
                cmds, others = _commands(m.group("body"))
                not_run["shell lines that are not pie-retriever commands"] += others
                snippets += [Snippet(rel, line, "cli", tag, why, c) for c in cmds]
            else:
                not_run["blocks in other languages"] += 1
    return snippets, not_run


SNIPPETS, NOT_RUN = collect()


def _pages(tag: str) -> list[str]:
    return sorted({s.page for s in SNIPPETS if s.tag == tag})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    from pie_retriever.pool.pools import bundled_pool_path, bundled_queries_path

    work = tmp_path / "main"
    work.mkdir()
    (work / "pool.jsonl").write_bytes(bundled_pool_path().read_bytes())
    (work / "queries.jsonl").write_bytes(bundled_queries_path().read_bytes())
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared, target_is_directory=True)
        if (shared / "ieb").is_dir():  # the pages call the folder of the four IEB files `ieb/`
            (work / "ieb").symlink_to(shared / "ieb", target_is_directory=True)
    monkeypatch.chdir(work)
    return work


def _run_cli(cmd: str, where: str) -> None:
    lexer = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    if _SHELL_OPS & set(tokens):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{where}: `{cmd}` exited {done.returncode}: {done.stderr[-2000:]}"
        return
    from pie_retriever.cli import main

    argv = shlex.split(cmd, comments=True)
    assert argv[0] == "pie-retriever"
    try:
        code = main(argv[1:])
    except SystemExit as exc:  # --help / --version
        code = exc.code or 0
    assert code == 0, f"{where}: `{cmd}` exited {code}"


def _run_page(page: str, tags: set[str], capsys) -> int:
    namespace: dict = {"__name__": "__main__"}
    ran = 0
    for s in (s for s in SNIPPETS if s.page == page and s.tag in tags):
        if s.lang == "python":
            exec(compile(s.code, s.id, "exec"), namespace)
        else:
            _run_cli(s.code, s.id)
        ran += 1
        capsys.readouterr()  # keep the output of long pages out of memory
    return ran


@pytest.mark.parametrize("page", _pages("fast"))
def test_page_snippets_run(page, workdir, capsys):
    assert _run_page(page, {"fast"}, capsys) > 0


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages("slow"))
def test_slow_page_snippets_run(page, workdir, capsys):
    assert _run_page(page, {"fast", "slow"}, capsys) > 0  # the page's fast blocks too: the slow ones may use them


@pytest.mark.vllm
def test_readme_vllm_block_runs_as_a_script(tmp_path):
    """The README's vLLM example pasted into a file and run with python: the engine starts (it needs the
    ``if __name__ == "__main__":`` guard, since vLLM re-imports the main module in its worker process)."""
    blocks = [s for s in SNIPPETS if s.page == "README.md" and s.tag == "vllm"]
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0].code, encoding="utf-8")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "->" in done.stdout


def test_pages_run_elsewhere_are_run_there():
    for page, test in ELSEWHERE.items():
        if any(s.page == page for s in SNIPPETS):
            assert page.split("/")[-1] in (REPO / test).read_text(encoding="utf-8"), f"{test} does not run {page}"


def test_snippet_inventory(capsys):
    """Every snippet is run by some test, or marked manual with a reason; the counts are printed (`pytest -s`)."""
    counts: dict[str, int] = {}
    for s in SNIPPETS:
        key = f"{s.lang} {s.tag}"
        counts[key] = counts.get(key, 0) + 1
        if s.tag == "manual":
            assert s.why, f"{s.id}: a manual snippet needs a reason: <!-- snippet: manual: why -->"
    vllm_blocks = [s for s in SNIPPETS if s.tag == "vllm"]
    assert all(s.page in ("README.md", "docs/vllm.md") for s in vllm_blocks), [s.id for s in vllm_blocks]
    with capsys.disabled():
        print(f"\ndoc snippets: {len(SNIPPETS)} in {len(PAGES)} pages: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print("not run: " + ", ".join(f"{v} {k}" for k, v in NOT_RUN.items()))
        for s in SNIPPETS:
            if s.tag in ("manual", "elsewhere"):
                print(f"  {s.tag}: {s.id} {s.code.splitlines()[0][:70]!r} ({s.why})")
    assert SNIPPETS
