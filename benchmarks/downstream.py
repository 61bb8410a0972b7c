"""The paper's downstream uses, measured: data selection, test-set compression, dataset task correlation, task
maps, task discovery, and `pie-retriever select` at 100k instructions.

    python benchmarks/downstream.py [--data ../shared/ieb] [--section all|selection|compression|compare|maps|tasks|scale]
    python benchmarks/downstream.py --render      # the tables of results/downstream_*.json into docs/downstream.md

Writes results/downstream_<section>.json (and results/downstream_*.png). Caches embeddings and silver labels
under runs/downstream/ (not tracked). IEB is read from --data / PIE_IEB_DIR / ../shared/ieb and never copied.
eft_test is only *evaluated* on (selection coverage, compression and discovery are measured there against its
gold labels); nothing here trains or tunes a model or a default on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pie_retriever.encoders.models import DEFAULT_MODEL

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "downstream"
RESULTS = REPO / "results"
DOCS = REPO / "docs" / "downstream.md"
# The tuned model measured here: the library default (every downstream command's default model).
TUNED = DEFAULT_MODEL
BUDGETS = (50, 200, 600)
RATIOS = (0.02, 0.05, 0.1, 0.2)


# -- shared ------------------------------------------------------------------------------------------------
@dataclass
class Context:
    """IEB folder, caches and loaded encoders (each model loaded once per run)."""

    data: Path
    encoders: dict[str, Any] = field(default_factory=dict)

    def encoder(self, name: str) -> Any:
        from pie_retriever.downstream.embed import make_encoder

        if name not in self.encoders:
            self.encoders[name] = make_encoder(name)
        return self.encoders[name]

    def vectors(self, texts: list[str], model: str) -> np.ndarray:
        from pie_retriever.downstream.embed import encode_texts

        return encode_texts(texts, self.encoder(model), cache_dir=RUNS / "emb", show_progress=False)

    def silver(self, texts: list[str]) -> list[str]:
        from pie_retriever.downstream.embed import silver_labels

        return silver_labels(texts, cache=RUNS / "silver_labels.json")

    def eft_test(self) -> tuple[list[str], list[str]]:
        from pie_retriever.pool.ieb import EFT_TEST, load_labelled

        return load_labelled(self.data / EFT_TEST)

    def unsup(self) -> list[str]:
        from pie_retriever.pool.ieb import EFT_TRAIN_UNSUP, load_unlabelled

        return load_unlabelled(self.data / EFT_TRAIN_UNSUP)


def meta(seconds: float, section: str) -> dict[str, Any]:
    from pie_retriever._util import library_versions

    return {"seconds": round(seconds, 1), "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "versions": library_versions(["pie-retriever", "numpy", "torch", "faiss-cpu", "scikit-learn", "scipy", "umap-learn"]),
            "command": f"python benchmarks/downstream.py --section {section}"}


def mean_sd(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "runs": int(len(v))}


# -- selection ---------------------------------------------------------------------------------------------
def _coverage_runs(vectors: np.ndarray, labels: list[str], budget: int, method: str, seeds: range) -> dict[str, Any]:
    from pie_retriever.downstream.coverage import task_coverage
    from pie_retriever.downstream.select import select_subset

    runs = [task_coverage(labels, select_subset(vectors, budget, method, labels=labels, seed=s)) for s in seeds]
    keys = ("distinct", "label_recall", "entropy_bits", "entropy_norm", "rare_kept")
    out = {k: mean_sd([r[k] for r in runs]) for k in keys}
    out.update({k: runs[0][k] for k in ("pool_labels", "rare_labels", "rare_max_size")})
    return out


def selection(ctx: Context) -> dict[str, Any]:
    """Coverage at budgets 50/200/600 on eft_train_unsup (silver labels) and eft_test (gold), PIE vs MiniLM vs random."""
    texts, gold = ctx.eft_test()
    sets = {"eft_train_unsup (silver labels)": (ctx.unsup(), None), "eft_test (gold labels)": (texts, gold)}
    out: dict[str, Any] = {"budgets": list(BUDGETS), "sets": {}}
    for set_name, (set_texts, labels) in sets.items():
        labels = labels or ctx.silver(set_texts)
        vecs = {m: ctx.vectors(set_texts, m) for m in (TUNED, "minilm")}
        rows: dict[str, Any] = {}
        for budget in BUDGETS:
            row = {"random": _coverage_runs(vecs[TUNED], labels, budget, "random", range(20))}
            for model in (TUNED, "minilm"):
                row[f"kmeans / {model}"] = _coverage_runs(vecs[model], labels, budget, "kmeans", range(5))
                row[f"kcenter / {model}"] = _coverage_runs(vecs[model], labels, budget, "kcenter", range(1))
            row["task-quota (uses the labels)"] = _coverage_runs(vecs[TUNED], labels, budget, "task-quota", range(1))
            rows[str(budget)] = row
            print(f"selection {set_name} budget {budget}: " + ", ".join(f"{k} {v['distinct']['mean']:.1f}" for k, v in row.items()), file=sys.stderr)
        out["sets"][set_name] = {"n": len(set_texts), "labels": len(set(labels)), "by_budget": rows}
    return out


# -- compression -------------------------------------------------------------------------------------------
def item_scores(ctx: Context, texts: list[str], labels: list[str]) -> dict[str, np.ndarray]:
    """Per-item leave-one-out task P@4 on eft_test of several retrieval systems (the 'systems' to rank)."""
    from pie_retriever.encoders.hashing import HashingEncoder
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.metrics import relevance
    from pie_retriever.evaluation.rankers import BM25Ranker, EmbeddingRanker, TfidfRanker, rank_by_vectors

    lab = np.asarray(labels, dtype=object)
    per_item = lambda idx: relevance(lab, lab[idx])[:, :4].mean(axis=1)
    systems: dict[str, Any] = {
        "BM25": BM25Ranker(), "TF-IDF": TfidfRanker(),
        "MiniLM + PIE prompt (cls)": EmbeddingRanker(TransformerEncoder("minilm", prompt="pie", pooling="cls")),
        "MiniLM + PIE prompt (mean)": EmbeddingRanker(TransformerEncoder("minilm", prompt="pie")),
        "hashing (384-d word hashing)": EmbeddingRanker(HashingEncoder(dim=384)),
    }
    out = {TUNED: per_item(rank_by_vectors(ctx.vectors(texts, TUNED), ctx.vectors(texts, TUNED), 4, loo=True)),
           "all-MiniLM-L6-v2": per_item(rank_by_vectors(ctx.vectors(texts, "minilm"), ctx.vectors(texts, "minilm"), 4, loo=True))}
    for name, ranker in systems.items():
        out[name] = per_item(ranker.rank(texts, None, 4, loo=True))
    return out


def _subset_stats(scores: np.ndarray, full: np.ndarray, small: Any, labels: list[str]) -> dict[str, float]:
    """Kendall tau of the systems' ranking, |error| of their means, TV distance of the task distribution."""
    from scipy.stats import kendalltau

    from pie_retriever.downstream.compress import label_distance, weighted_mean

    est = weighted_mean(scores, small)
    err = np.abs(est - full)
    return {"tau": float(kendalltau(full, est).statistic), "mae": float(err.mean()), "max_err": float(err.max()),
            "tv": label_distance(labels, small)}


def _method_runs(vectors: np.ndarray, scores: np.ndarray, labels: list[str], ratio: float, method: str, weighted: bool, seeds: range) -> dict[str, Any]:
    from pie_retriever.downstream.compress import Compressed, compress_indices

    full = scores.mean(axis=0)
    runs = []
    for s in seeds:
        small = compress_indices(vectors, ratio, method, seed=s)
        if not weighted:
            small = Compressed(small.indices, np.ones(len(small)))
        runs.append(_subset_stats(scores, full, small, labels))
    out = {k: mean_sd([r[k] for r in runs]) for k in ("tau", "mae", "max_err", "tv")}
    out["tau_is_1"] = float(np.mean([r["tau"] > 0.9999 for r in runs]))
    out["kept"] = len(small)
    return out


def compression(ctx: Context) -> dict[str, Any]:
    """Kendall tau and |mean error| of 7 systems' eft_test P@4 on compressed sets vs random subsets of the same size."""
    texts, labels = ctx.eft_test()
    scores_by = item_scores(ctx, texts, labels)
    names = list(scores_by)
    scores = np.stack([scores_by[n] for n in names], axis=1)
    vectors = {m: ctx.vectors(texts, m) for m in (TUNED, "minilm")}
    methods = [("random", TUNED, True, range(200)), ("kmeans", TUNED, True, range(20)),
               ("kmeans", TUNED, False, range(20)), ("stratified", TUNED, True, range(20)),
               ("kmeans", "minilm", True, range(20)), ("stratified", "minilm", True, range(20))]
    out: dict[str, Any] = {"n": len(texts), "systems": {n: float(scores_by[n].mean()) for n in names}, "by_ratio": {}}
    for ratio in RATIOS:
        row = {}
        for method, model, weighted, seeds in methods:
            key = "random" if method == "random" else f"{method} / {model}" + ("" if weighted else " (unweighted)")
            row[key] = _method_runs(vectors[model], scores, labels, ratio, method, weighted, seeds)
        out["by_ratio"][str(ratio)] = row
        print(f"compression {ratio}: " + ", ".join(f"{k} tau {v['tau']['mean']:.3f} mae {v['mae']['mean']:.4f}" for k, v in row.items()), file=sys.stderr)
    return out


# -- compare -----------------------------------------------------------------------------------------------
def compare_sources(ctx: Context) -> dict[str, list[str]]:
    from pie_retriever.pool.ieb import IFT_TEST, IIS_TEST, load_iis, load_labelled
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    iis = load_iis(ctx.data / IIS_TEST)
    return {"bundled pool": [d.instruction for d in load_bundled_pool()], "bundled queries": [d.instruction for d in load_bundled_queries()],
            "IEB eft_train_unsup": ctx.unsup(), "IEB eft_test": ctx.eft_test()[0], "IEB ift_test": load_labelled(ctx.data / IFT_TEST)[0],
            "IEB intention_similarity": sorted(set(iis.first) | set(iis.second))}


def compare(ctx: Context) -> dict[str, Any]:
    """Coverage and Wasserstein matrices of six offline sets (the default model, heatmap PNG; plain MiniLM in the JSON)."""
    from pie_retriever.downstream.compare import compare_sets, plot_comparison

    sources = compare_sources(ctx)
    out = {}
    for model in (TUNED, "minilm"):
        out[model] = compare_sets({n: ctx.vectors(t, model) for n, t in sources.items()}, max_items=20000)
    plot_comparison(out[TUNED], RESULTS / "downstream_compare.png", title=f"dataset task correlation ({TUNED})")
    return out


# -- maps --------------------------------------------------------------------------------------------------
def maps(ctx: Context) -> dict[str, Any]:
    """Side by side on the bundled pool (plain MiniLM vs the default model, gold tasks) and eft_train_unsup by named cluster."""
    from pie_retriever.downstream.taskmap import make_panel, plot_maps
    from pie_retriever.pool.pools import load_bundled_pool

    pool = load_bundled_pool()
    texts, gold = [d.instruction for d in pool], [d.metadata["task"] for d in pool]
    out: dict[str, Any] = {"bundled": {}}
    panels = []
    for model, title in (("minilm", "all-MiniLM-L6-v2 (plain)"), (TUNED, f"{TUNED} (the default)")):
        panel, summary = make_panel(texts, ctx.vectors(texts, model), labels=gold, projection="auto", title=title)
        panel.title = f"{title}: silhouette by task {summary['silhouette']:.3f}"
        panels.append(panel)
        out["bundled"][model] = {"silhouette": summary["silhouette"]}
    out["bundled"]["skipped_labels"] = plot_maps(panels, RESULTS / "downstream_map_bundled.png",
                                                 suptitle="bundled pool: 249 instructions, 30 tasks (colour and name = gold task)")
    unsup = ctx.unsup()
    panel, summary = make_panel(unsup, ctx.vectors(unsup, TUNED), color_by="cluster", labels=ctx.silver(unsup), n_clusters=40,
                                title=f"IEB eft_train_unsup, 20,814 instructions, 40 KMeans clusters ({TUNED})")
    out["eft_train_unsup"] = {"silhouette": summary["silhouette"], "k": summary["k"], "groups": summary["groups"],
                              "skipped_labels": plot_maps([panel], RESULTS / "downstream_map_eft_train_unsup.png", panel_size=9.0)}
    return out


# -- tasks -------------------------------------------------------------------------------------------------
def _name_accuracy(result: dict[str, Any], gold: list[str]) -> float:
    """Share of instructions whose discovered cluster's name is a verb|noun pair of the cluster's majority gold label."""
    from collections import Counter

    from pie_retriever.labeling.api import parse_label

    assign = np.asarray(result["assign"])
    ok = 0
    for c in result["clusters"]:
        rows = np.flatnonzero(assign == c["cluster"])
        majority = Counter(gold[i] for i in rows).most_common(1)[0][0]
        ok += len(rows) * (tuple(c["label"].split("|")) in parse_label(majority))
    return ok / len(gold)


def tasks(ctx: Context) -> dict[str, Any]:
    """Discovery on eft_test (ARI and name accuracy vs gold) and the biggest discovered tasks of eft_train_unsup."""
    from sklearn.metrics import adjusted_rand_score

    from pie_retriever.downstream.tasks import discover_tasks

    texts, gold = ctx.eft_test()
    silver = ctx.silver(texts)
    out: dict[str, Any] = {"eft_test": {"n": len(texts), "gold_labels": len(set(gold)),
                                        "labeler_agreement": float(np.mean([tuple(s.split("|")) in parse(g) for s, g in zip(silver, gold)]))}}
    for model in (TUNED, "minilm"):
        res = discover_tasks(texts, ctx.vectors(texts, model), labels=silver)
        out["eft_test"][model] = {"k": res["k"], "silhouette": res["silhouette"], "ari": adjusted_rand_score(gold, res["assign"]),
                                  "name_accuracy": _name_accuracy(res, gold)}
    unsup = ctx.unsup()
    res = discover_tasks(unsup, ctx.vectors(unsup, TUNED), labels=ctx.silver(unsup))
    out["eft_train_unsup"] = {"n": len(unsup), "k": res["k"], "silhouette": res["silhouette"],
                              "top": [{k: c[k] for k in ("name", "size", "share", "purity", "verb_share", "examples")} for c in res["clusters"][:15]]}
    return out


def parse(label: str) -> list[tuple[str, str]]:
    from pie_retriever.labeling.api import parse_label

    return parse_label(label)


# -- scale -------------------------------------------------------------------------------------------------
TEMPLATES = ("Please {low}", "{text} Keep the answer brief.", "Task: {text}", "I need help with this. {text}", "{text} Explain your reasoning.")


def build_100k(ctx: Context, path: Path, n: int = 100_000) -> int:
    """eft_train_unsup (20,814) plus templated variants of it (TEMPLATES, ours) up to ``n`` lines of JSONL."""
    base = ctx.unsup()
    rows = list(base)
    for t in TEMPLATES:
        rows += [t.format(text=s.strip(), low=s.strip()[:1].lower() + s.strip()[1:]) for s in base]
    with path.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(rows[:n]):
            fh.write(json.dumps({"id": f"x{i}", "instruction": text}, ensure_ascii=False) + "\n")
    return min(n, len(rows))


def _timed(cmd: list[str]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    tail = [ln for ln in proc.stderr.splitlines() if ln.startswith("Selected")]
    return {"wall_seconds": round(wall, 1), "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "report": tail[-1] if tail else proc.stderr[-400:]}


def scale(ctx: Context) -> dict[str, Any]:
    """Wall time of `pie-retriever select` on a 100k pool: cold (encode + KMeans 600) and with cached embeddings."""
    pool = RUNS / "pool100k.jsonl"
    n = build_100k(ctx, pool)
    cache = RUNS / "emb100k"
    for f in cache.glob("*.npy"):
        f.unlink()
    cmd = [str(REPO / ".venv" / "bin" / "pie-retriever"), "select", str(pool), "--budget", "600", "-o", str(RUNS / "sub100k.jsonl"),
           "--labels", "none", "--cache", str(cache)]
    cold = _timed(cmd)
    warm = _timed(cmd)
    return {"pool": f"{n:,} instructions: IEB eft_train_unsup (20,814) + templated variants ({', '.join(TEMPLATES)})",
            "command": " ".join(["pie-retriever", *cmd[1:]]).replace(str(REPO) + "/", ""), "cold": cold, "cached_embeddings": warm}


SECTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "selection": selection, "compression": compression, "compare": compare, "maps": maps, "tasks": tasks, "scale": scale,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("PIE_IEB_DIR", str(REPO.parent / "shared" / "ieb")))
    parser.add_argument("--section", default="all", choices=["all", *SECTIONS])
    parser.add_argument("--render", action="store_true", help="only render the docs tables from results/downstream_*.json")
    parser.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: theirs)")
    args = parser.parse_args(argv)
    if args.render:
        return render()
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)  # on a shared, busy machine one thread is far faster than two
        faiss.omp_set_num_threads(args.threads)
    ctx = Context(Path(args.data))
    for name in list(SECTIONS) if args.section == "all" else [args.section]:
        start = time.perf_counter()
        result = SECTIONS[name](ctx)
        result["meta"] = meta(time.perf_counter() - start, name)
        path = RESULTS / f"downstream_{name}.json"
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"[{name}] {time.perf_counter() - start:.0f}s → {path}", file=sys.stderr)
    return 0


# -- rendering ---------------------------------------------------------------------------------------------
def _ms(cell: dict[str, float], fmt: str = ".1f") -> str:
    return format(cell["mean"], fmt) + (f" ± {format(cell['sd'], fmt)}" if cell.get("runs", 1) > 1 else "")


def _cell(value: Any) -> str:
    """A markdown table cell: one line, pipes escaped (task names are ``verb|noun``)."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows])


def render_selection(res: dict[str, Any]) -> str:
    parts = []
    for set_name, block in res["sets"].items():
        budgets = list(block["by_budget"])
        first = block["by_budget"][budgets[0]]
        any_row = next(iter(first.values()))
        header = ["method", *[f"{b}: distinct tasks" for b in budgets], *[f"{b}: smallest kept" for b in budgets]]
        rows = [[method, *[_ms(block["by_budget"][b][method]["distinct"]) for b in budgets],
                 *[_ms(block["by_budget"][b][method]["rare_kept"], ".3f") for b in budgets]] for method in first]
        parts.append(f"**{set_name}**: {block['n']:,} instructions, {block['labels']:,} labels; smallest tasks = the "
                     f"{any_row['rare_labels']:,} labels with at most {any_row['rare_max_size']} instruction(s).\n\n" + _table(header, rows))
        ent = [[method, *[_ms(block["by_budget"][b][method]["entropy_bits"], ".2f") for b in budgets]] for method in first]
        parts.append("Entropy of the kept task distribution (bits):\n\n" + _table(["method", *[f"budget {b}" for b in budgets]], ent))
    return "\n\n".join(parts)


def render_compression(res: dict[str, Any]) -> str:
    systems = ", ".join(f"{n} {v:.3f}" for n, v in sorted(res["systems"].items(), key=lambda kv: -kv[1]))
    rows = []
    for ratio, block in res["by_ratio"].items():
        for method, cell in block.items():
            rows.append([f"{float(ratio):g} ({cell['kept']})", method, _ms(cell["tau"], ".3f"), f"{cell['tau_is_1']:.2f}",
                         _ms(cell["mae"], ".4f"), _ms(cell["max_err"], ".4f"), _ms(cell["tv"], ".3f")])
    head = ["ratio (items)", "subset", "Kendall τ", "share τ = 1", "mean abs. error", "max abs. error", "task TV distance"]
    return f"Systems (full-set P@4 over {res['n']:,} eft_test items): {systems}.\n\n" + _table(head, rows)


def render_compare(res: dict[str, Any]) -> str:
    out = []
    for model in (TUNED, "minilm"):
        r = res[model]
        names = [f"{n} ({s:,})" for n, s in zip(r["names"], r["sizes"])]
        cov = [[n, *(f"{v:.3f}" for v in row)] for n, row in zip(names, r["coverage"])]
        out.append(f"Coverage, {model} (row covered by column; diagonal leave-one-out):\n\n" + _table(["", *r["names"]], cov))
    wd = res[TUNED]
    rows = [[n, *(f"{v:.4f}" for v in row)] for n, row in zip(wd["names"], wd["wasserstein"])]
    out.append(f"Mean per-dimension Wasserstein distance, {TUNED}:\n\n" + _table(["", *wd["names"]], rows))
    return "\n\n".join(out)


def render_tasks(res: dict[str, Any]) -> str:
    e = res["eft_test"]
    rows = [[m, str(e[m]["k"]), f"{e[m]['ari']:.3f}", f"{e[m]['name_accuracy']:.3f}"] for m in (TUNED, "minilm")]
    t1 = (f"eft_test ({e['n']:,} instructions, {e['gold_labels']} gold labels; the labeler alone agrees with the gold "
          f"label on {e['labeler_agreement']:.3f} of the instructions):\n\n" + _table(["model", "clusters (chosen)", "ARI vs gold", "name accuracy"], rows))
    u = res["eft_train_unsup"]
    top = [[str(i), c["name"], f"{c['size']:,}", f"{c['share']:.1%}", f"{c['purity']:.2f}", c["examples"][0][:70].replace("|", "/")]
           for i, c in enumerate(u["top"], 1)]
    t2 = (f"eft_train_unsup ({u['n']:,} instructions, {u['k']} clusters chosen), the 15 biggest:\n\n"
          + _table(["#", "task", "size", "share", "purity", "instruction nearest the centre"], top))
    return t1 + "\n\n" + t2


def render_scale(res: dict[str, Any]) -> str:
    rows = [[k.replace("_", " "), f"{v['wall_seconds']:.1f}", f"{v['load_before']:.1f} → {v['load_after']:.1f}", v["report"].split("[")[-1].rstrip("]")]
            for k, v in (("cold", res["cold"]), ("cached_embeddings", res["cached_embeddings"]))]
    return (f"Pool: {res['pool']}. Command: `{res['command']}`.\n\n"
            + _table(["run", "wall time (s)", "load average (1 min) before → after", "stages (from the command's own report)"], rows))


RENDERERS = {"selection": render_selection, "compression": render_compression, "compare": render_compare, "tasks": render_tasks, "scale": render_scale}


def render() -> int:
    """Replace the text between ``<!-- downstream-NAME:start -->`` and ``<!-- downstream-NAME:end -->`` in docs/downstream.md."""
    import re

    text = DOCS.read_text(encoding="utf-8")
    for name, fn in RENDERERS.items():
        path = RESULTS / f"downstream_{name}.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text(encoding="utf-8"))
        block = fn(res) + f"\n\n<sub>`{res['meta']['command']}`, {res['meta']['seconds']:.0f} s, load average after {res['meta']['load_average_after'][0]:.1f} on {res['meta']['cpus']} cores.</sub>"
        pattern = rf"(<!-- downstream-{name}:start -->\n).*?(<!-- downstream-{name}:end -->)"  # empty or filled
        text = re.sub(pattern, lambda m, b=block: m.group(1) + b + "\n" + m.group(2), text, flags=re.S)
    DOCS.write_text(text, encoding="utf-8")
    print(f"rendered → {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
