"""The snippet of docs/speed.md runs as written (a real int8 export of the default pie-minilm-lc, then a torch-free reload)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "speed.md"


@pytest.mark.slow
def test_speed_doc_snippet_runs(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    section = re.search(r"<!-- speed-snippet:start -->(.*?)<!-- speed-snippet:end -->", text, flags=re.S)
    assert section, "docs/speed.md has no speed-snippet markers"
    code = "\n".join(re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S))
    code += "\nimport sys\nassert 'torch' in sys.modules  # the export needed it; a fresh process does not (below)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("['p1'")  # the poem demonstration first for a haiku
    fresh = ("import sys\nfrom pie_retriever import PIERetriever\n"
             "print([h.id for h in PIERetriever.load('pool-onnx.pie').retrieve('Compose a haiku about autumn.', k=2)])\n"
             "assert 'torch' not in sys.modules\n")
    again = subprocess.run([sys.executable, "-c", fresh], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip() == done.stdout.strip().splitlines()[-1]
