"""Your own pool: training on it, batch search from the shell, and task match through DSPy and LlamaIndex.

Sections (each writes results/own_pool_<section>.json; run one with --only):

- ``train_bundled``: ``train_on_pool`` on the bundled pool's 249 demonstrations, evaluated on its 117 held-out
  queries (base MiniLM vs the tuned artifact; the shipped ``pie-minilm`` for reference). Wall time.
- ``train_ift``: a pool built from IEB ift_test with its gold labels (every eft_test / intention-similarity
  instruction dropped); no label has 3+ instructions, so 20 % of the labels are held out whole
  (``split_by="label"``) and evaluated leave-one-out; base vs tuned. Wall time.
- ``search``: ``pie-retriever search IDX --queries FILE -o picks.jsonl`` on 1,000 queries vs 20 single
  ``pie-retriever search IDX QUERY`` processes, scaled to 1,000.
- ``dspy``: ``dspy.KNNFewShot`` (k=4) on the bundled pool, share of the 4 attached demonstrations with the
  query's task over the 117 held-out queries: ``PIEEmbedder`` vs ``dspy.Embedder(encoder.encode)`` (DSPy's way:
  it embeds ``"instruction: ..."`` strings), same model.
- ``llamaindex``: task match at k=4: ``PIELlamaIndexRetriever`` vs a ``VectorStoreIndex`` whose nodes carry the
  demonstration's output and topic as metadata (LlamaIndex embeds metadata by default), same model.

    python benchmarks/own_pool.py [--only train_bundled,search,...] [--data ../shared/ieb] [--threads N]
    python benchmarks/own_pool.py --render      # the tables of docs/cli.md, training.md, dspy.md, llamaindex.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
CLI = [sys.executable, "-m", "pie_retriever.cli"]


def _context() -> dict[str, Any]:
    from pie_retriever._util import library_versions

    return {"load_average_at_start": os.getloadavg(), "cores": os.cpu_count(),
            "library_versions": library_versions(("pie-retriever", "torch", "transformers", "dspy", "llama-index-core"))}


def _write(name: str, payload: dict[str, Any]) -> None:
    payload = {**payload, "load_average_at_end": os.getloadavg()}
    path = RESULTS / f"own_pool_{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


# -- training ------------------------------------------------------------------------------------------
def train_bundled(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from pie_retriever import load_bundled_pool, load_bundled_queries
    from pie_retriever.training.data import labelled_set_from_pool
    from pie_retriever.training.pool import task_match, train_on_pool

    pool, queries = load_bundled_pool(), load_bundled_queries()
    t0 = time.perf_counter()
    res = train_on_pool(pool, work / "bundled", eval_queries=queries, overrides=_threads(args), progress=False)
    wall = time.perf_counter() - t0
    train_set, _ = labelled_set_from_pool(pool)
    shipped = task_match("pie-minilm", train_set, labelled_set_from_pool(queries)[0])
    return {"pool": "bundled (249 demonstrations, 30 tasks)", "eval": "117 held-out queries", "wall_seconds": round(wall, 1),
            "threads": args.threads or "all cores",
            "steps": res.steps, "seconds": res.seconds, "base": res.base, "tuned": res.tuned,
            "shipped_pie_minilm": shipped, "data": res.data_report, "final_losses": res.losses[-5:]}


def _threads(args: argparse.Namespace) -> dict[str, Any]:
    out = {} if args.threads is None else {"threads": args.threads}
    return out if args.epochs is None else {**out, "epochs": args.epochs}


def ift_pool(data_dir: Path) -> list[Any]:
    """ift_test as a pool (gold labels in metadata.task), minus every eft_test / intention-similarity instruction."""
    from pie_retriever.pool.ieb import IFT_TEST, held_out_instructions, load_labelled
    from pie_retriever.training.data import normalize_text
    from pie_retriever.types import Demonstration

    held = {normalize_text(t) for t in held_out_instructions(data_dir)}
    texts, labels = load_labelled(data_dir / IFT_TEST)
    return [Demonstration(t, metadata={"task": lab}) for t, lab in zip(texts, labels) if normalize_text(t) not in held]


def train_ift(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from pie_retriever.training.pool import train_on_pool

    pool = ift_pool(Path(args.data))
    t0 = time.perf_counter()
    res = train_on_pool(pool, work / "ift", eval_split=0.2, split_by="label", overrides=_threads(args), progress=False)
    wall = time.perf_counter() - t0
    return {"pool": f"IEB ift_test gold labels, eft_test/IIS instructions dropped ({len(pool)} instructions)",
            "eval": "20 % of the labels with 2 instructions held out whole, leave-one-out among themselves (unseen tasks; "
                    "no ift_test label has 3+ instructions; each query has one partner, so P@4 is at most 0.25)",
            "wall_seconds": round(wall, 1), "steps": res.steps, "epochs": args.epochs or "POOL_DEFAULTS",
            "threads": args.threads or "all cores",
            "seconds": res.seconds, "base": res.base, "tuned": res.tuned, "data": res.data_report,
            "note": "the shipped pie-minilm was trained on ift_test, so it is not compared here"}


# -- batch search from the shell -----------------------------------------------------------------------
def _queries(n: int, args: argparse.Namespace) -> list[str]:
    from pie_retriever import load_bundled_queries

    ift = Path(args.data) / "ift_test.json"
    if ift.is_file():
        from pie_retriever.pool.ieb import load_labelled

        texts = [" ".join(t.split()) for t in load_labelled(ift)[0]]
    else:
        texts = [q.instruction for q in load_bundled_queries()]
    texts = [t for t in texts if t]
    return [texts[i % len(texts)] for i in range(n)]


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def search(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from pie_retriever.pool.pools import bundled_pool_path

    index = work / "pool.pie"
    subprocess.run([*CLI, "index", str(bundled_pool_path()), "-o", str(index)], check=True, stderr=subprocess.DEVNULL)
    queries = _queries(1000, args)
    qfile = work / "queries.txt"
    qfile.write_text("\n".join(queries) + "\n")
    batch = _timed([*CLI, "search", str(index), "--queries", str(qfile), "-o", str(work / "picks.jsonl")])
    singles = [_timed([*CLI, "search", str(index), q, "--json"]) for q in queries[:20]]
    per_call = sum(singles) / len(singles)
    return {"queries": len(queries), "pool": "bundled (249 demonstrations), pie-minilm, flat index",
            "batch_seconds": round(batch, 1), "single_call_seconds": [round(s, 2) for s in singles],
            "single_call_mean_seconds": round(per_call, 2), "single_calls_1000_estimated_seconds": round(1000 * per_call, 0),
            "speedup": round(1000 * per_call / batch, 1)}


# -- DSPy and LlamaIndex -------------------------------------------------------------------------------
def _one_thread() -> None:
    """These frameworks embed one query per call: the automatic policy's single-query setting (1 torch thread)."""
    from pie_retriever._threads import apply_threads

    apply_threads(None, 1)


def dspy_match(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import dspy

    from pie_retriever import load_bundled_pool, load_bundled_queries
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.integrations.dspy import PIEEmbedder, PIEKNNFewShot

    class Recorder(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict("instruction -> output")

        def forward(self, instruction: str) -> dspy.Prediction:
            return dspy.Prediction(output="", demos=list(self.predict.demos))

    _one_thread()
    train = [dspy.Example(instruction=d.instruction, output=d.output, task=d.metadata["task"]).with_inputs("instruction")
             for d in load_bundled_pool()]
    queries = load_bundled_queries()

    def match(tele: Any) -> float:
        program = tele.compile(Recorder())
        hits = [d.task == q.metadata["task"] for q in queries for d in program(instruction=q.instruction).demos]
        return round(sum(hits) / len(hits), 4)

    out: dict[str, Any] = {"k": 4, "queries": len(queries)}
    for model in (_default_model(), "minilm"):
        enc = TransformerEncoder(model)
        out[model] = {
            "dspy.Embedder(encoder.encode, caching=False) (DSPy default: embeds 'instruction: ...')":
                match(dspy.KNNFewShot(k=4, trainset=train, vectorizer=dspy.Embedder(enc.encode, caching=False), max_bootstrapped_demos=0)),
            "PIEEmbedder (instruction field only)":
                match(dspy.KNNFewShot(k=4, trainset=train, vectorizer=PIEEmbedder(enc), max_bootstrapped_demos=0)),
            "PIEKNNFewShot (PIERetriever inside)": match(PIEKNNFewShot(4, train, model=enc, max_bootstrapped_demos=0)),
        }
    return out


def _default_model() -> str:
    from pie_retriever.encoders.models import DEFAULT_MODEL

    return DEFAULT_MODEL


def llamaindex_match(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from pie_retriever import PIERetriever, load_bundled_pool, load_bundled_queries
    from pie_retriever.integrations.llamaindex import PIEEmbedding, PIELlamaIndexRetriever, demonstrations_to_nodes

    _one_thread()
    pool, queries = load_bundled_pool(), load_bundled_queries()
    task = {d.id: d.metadata["task"] for d in pool}

    def match(retriever: Any) -> float:
        hits = [task[n.node.node_id] == q.metadata["task"] for q in queries for n in retriever.retrieve(q.instruction)]
        return round(sum(hits) / len(hits), 4)

    out: dict[str, Any] = {"k": 4, "queries": len(queries)}
    for model in (_default_model(), "minilm"):
        pie = PIERetriever.from_demonstrations(pool, model)
        emb = PIEEmbedding(pie)
        default_nodes = [TextNode(text=d.instruction, id_=d.id, metadata={"output": d.output, "topic": d.metadata["topic"]})
                         for d in pool]
        clean_nodes = demonstrations_to_nodes([d.to_dict() | {"metadata": {"topic": d.metadata["topic"]}} for d in pool])
        out[model] = {
            "VectorStoreIndex, metadata embedded (LlamaIndex default)":
                match(VectorStoreIndex(default_nodes, embed_model=emb).as_retriever(similarity_top_k=4)),
            "VectorStoreIndex, demonstrations_to_nodes (metadata not embedded)":
                match(VectorStoreIndex(clean_nodes, embed_model=emb).as_retriever(similarity_top_k=4)),
            "PIELlamaIndexRetriever": match(PIELlamaIndexRetriever(pie, k=4)),
        }
    return out


# -- tables in the docs -------------------------------------------------------------------------------
def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"own_pool_{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _load_note(d: dict[str, Any]) -> str:
    return f"load average {d['load_average_at_start'][0]:.0f} → {d['load_average_at_end'][0]:.0f} on {d['cores']} cores"


def _table_search(d: dict[str, Any]) -> str:
    return (f"| 1,000 queries, {d['pool']} | wall time |\n|---|---|\n"
            f"| `search --queries FILE -o picks.jsonl` (one process, batched) | **{d['batch_seconds']:.1f} s** |\n"
            f"| 1,000 × `search DIR QUERY --json` (mean of 20 processes × 1,000) | {d['single_calls_1000_estimated_seconds']:,.0f} s "
            f"({d['single_call_mean_seconds']:.2f} s per call) |\n\n"
            f"{d['speedup']:.0f}× faster; measured with {_load_note(d)}"
            + (" (the machine was shared), so the absolute times are high; the ratio is the figure to keep."
               if max(d["load_average_at_start"][0], d["load_average_at_end"][0]) > d["cores"] else
               ". A single call is mostly process start, importing torch and loading the model."))


def _metrics(m: dict[str, Any], bold: bool = False) -> str:
    b = "**" if bold else ""
    return " | ".join(f"{b}{m[key]:.3f}{b}" for key in ("p@1", "p@4", "mrr@10"))


def _table_train(b: dict[str, Any] | None, i: dict[str, Any] | None) -> str:
    rows = ["| pool (evaluation) | model | P@1 | P@4 | MRR@10 | training | wall time (all) |", "|---|---|---|---|---|---|---|"]
    for d in (x for x in (b, i) if x):
        pool = f"{d['pool']}; evaluation: {d['eval']}"
        rows.append(f"| {pool} | base MiniLM (no training) | {_metrics(d['base'])} | – | – |")
        epochs = f", {d['epochs']} epochs" if isinstance(d.get("epochs"), int) else ""
        rows.append(f"| | **tuned on the pool** ({d['steps']} steps{epochs}) | {_metrics(d['tuned'], bold=True)} | {d['seconds']['train']:.0f} s "
                    f"| {d['wall_seconds']:.0f} s |")
        if "shipped_pie_minilm" in d:
            rows.append(f"| | shipped `pie-minilm` (IEB-trained), for reference | {_metrics(d['shipped_pie_minilm'])} | – | – |")
    notes = "; ".join(f"{d['section']}: {_load_note(d)}, {d['threads']} thread(s)" for d in (b, i) if d)
    return "\n".join(rows) + f"\n\nMeasured on the shared 2-core machine ({notes})."


def _table_framework(d: dict[str, Any]) -> str:
    # the run's default model: the other key holding the same retrieval rows as "minilm"
    tuned = next(m for m, v in d.items() if m != "minilm" and isinstance(v, dict) and v.keys() == d["minilm"].keys())
    names = list(d[tuned])
    rows = [f"| retrieval (k = 4) | `{tuned}` | `minilm` |", "|---|---|---|"]
    rows += [f"| {n} | {d[tuned][n]:.3f} | {d['minilm'][n]:.3f} |" for n in names]
    return "\n".join(rows) + f"\n\nTask match over {d['queries']} held-out queries; `python benchmarks/own_pool.py --only {d['section']}` ({_load_note(d)})."


def render() -> None:
    """Write the tables between the own-pool markers of the docs pages from results/own_pool_*.json."""
    import re

    tables = {}
    if (d := _load("search")) is not None:
        tables[("docs/cli.md", "own-pool-search")] = _table_search(d)
    if _load("train_bundled") or _load("train_ift"):
        tables[("docs/training.md", "own-pool-train")] = _table_train(_load("train_bundled"), _load("train_ift"))
    for name, page in (("dspy", "docs/dspy.md"), ("llamaindex", "docs/llamaindex.md")):
        if (d := _load(name)) is not None:
            tables[(page, f"own-pool-{name}")] = _table_framework(d)
    for (page, marker), table in tables.items():
        path = REPO / page
        text = path.read_text(encoding="utf-8")
        new = re.sub(rf"(<!-- {marker}:start -->\n).*?(\n<!-- {marker}:end -->)", lambda m, t=table: m.group(1) + t + m.group(2), text, flags=re.S)
        path.write_text(new, encoding="utf-8")
        print(f"rendered {marker} into {page}", file=sys.stderr)


SECTIONS: dict[str, Callable[[Path, argparse.Namespace], dict[str, Any]]] = {
    "dspy": dspy_match, "llamaindex": llamaindex_match, "search": search, "train_bundled": train_bundled, "train_ift": train_ift,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training (default: every core)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: POOL_DEFAULTS, 8)")
    parser.add_argument("--data", default=os.environ.get("PIE_IEB_DIR", str(REPO.parent / "shared" / "ieb")), help="IEB folder")
    parser.add_argument("--render", action="store_true", help="only write the tables into the docs from results/")
    args = parser.parse_args()
    if args.render:
        render()
        return 0
    RESULTS.mkdir(exist_ok=True)
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        with tempfile.TemporaryDirectory(prefix=f"own_pool_{name}_") as tmp:
            context = _context()
            t0 = time.perf_counter()
            result = SECTIONS[name](Path(tmp), args)
            _write(name, {"section": name, **result, "section_seconds": round(time.perf_counter() - t0, 1), **context,
                          "command": f"python benchmarks/own_pool.py --only {name}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
