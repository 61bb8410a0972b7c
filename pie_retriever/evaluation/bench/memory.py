"""Memory of a built retriever: RSS helpers and the fresh-process probe (``python -m pie_retriever.evaluation.bench.memory``)."""

from __future__ import annotations

import gc
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever.encoders.base import Encoder

__all__ = ["StoredVectorEncoder", "memory_probe", "peak_rss_bytes", "process_peak_rss_bytes", "reset_peak_rss", "rss_bytes"]


def rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux ≥ 4.0); False when unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last :func:`reset_peak_rss` (VmHWM), else since the process started (ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process_peak_rss_bytes()


def process_peak_rss_bytes() -> int:
    """Peak RSS of this process since it started (``ru_maxrss``; not affected by :func:`reset_peak_rss`)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


# -- memory probes in a fresh process --------------------------------------------------------------
class StoredVectorEncoder(Encoder):
    """Test/probe encoder serving rows of a stored (memory-mapped) matrix in call order; no model loaded."""

    prompt = query_prompt = "{instruction}"

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors
        self._pos = 0

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def fingerprint(self) -> str:
        return "stored-vectors"

    def config(self) -> dict[str, Any]:
        return {"type": "stored"}

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        n = len(texts)
        out = np.array(self._vectors[self._pos:self._pos + n], dtype=np.float32)
        self._pos += n
        return out


def _probe_main(kind: str, texts_path: str, vectors_path: str | None, index_json: str | None = None) -> dict[str, int]:
    import json

    from pie_retriever.index import create_index
    from pie_retriever.retrieval.bm25 import BM25Retriever
    from pie_retriever.retrieval.retriever import PIERetriever

    create_index(4)  # import faiss before the baseline
    BM25Retriever(["warm up the tokenizer and stopwords", "second text"])
    gc.collect()
    rss0 = rss_bytes()
    reset_peak_rss()
    with open(texts_path, encoding="utf-8") as fh:
        texts = json.load(fh)
    demos = [{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)]
    if kind == "pie":
        vectors = np.load(vectors_path, mmap_mode="r")
        index = json.loads(index_json) if index_json else {}
        retriever: Any = PIERetriever.from_demonstrations(demos, StoredVectorEncoder(vectors), show_progress=False,
                                                          index=index.get("kind", "flat"), index_options=index.get("options"))
        del vectors
    else:
        retriever = BM25Retriever(demos)
    del demos, texts
    gc.collect()
    rss1 = rss_bytes()
    assert len(retriever) > 0
    return {"retained": rss1 - rss0, "peak": max(0, peak_rss_bytes() - rss0)}


def memory_probe(kind: str, texts: Sequence[str], vectors: np.ndarray | None = None,
                 index: dict[str, Any] | None = None) -> dict[str, int]:
    """Build a ``pie`` (faiss over ``vectors``; ``index``: ``{"kind": "flat"|"hnsw", "options": {...}}``, default the
    retriever's default index) or ``bm25`` retriever over ``texts`` in a fresh Python process
    and return the RSS it retains after the build (``retained``) and its peak above the baseline (``peak``).
    A fresh process keeps freed memory of earlier runs from hiding the growth."""
    import json
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="pie-mem-"))
    try:
        texts_path = tmp / "texts.json"
        texts_path.write_text(json.dumps(list(texts)), encoding="utf-8")
        vec_path = None
        if vectors is not None:
            vec_path = tmp / "vectors.npy"
            np.save(vec_path, np.ascontiguousarray(vectors, dtype=np.float32))
        cmd = [sys.executable, "-m", "pie_retriever.evaluation.bench.memory", "--memory-probe", kind, str(texts_path)]
        if vec_path is not None:
            cmd.append(str(vec_path))
            if index:
                cmd.append(json.dumps(index))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"memory probe {kind} failed (exit {done.returncode}): {done.stderr[-800:]}"
            raise RuntimeError(msg)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json as _json

    if len(sys.argv) >= 4 and sys.argv[1] == "--memory-probe":
        print(_json.dumps(_probe_main(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None,
                                      sys.argv[5] if len(sys.argv) > 5 else None)))
    else:
        print("usage: python -m pie_retriever.evaluation.bench.memory --memory-probe pie|bm25 TEXTS.json [VECTORS.npy [INDEX.json]]", file=sys.stderr)
        sys.exit(2)
