"""Render a benchmark results dict (``results/<name>.json`` of ``pie-retriever bench``) as README markdown and a PNG.

:func:`render_markdown` turns a results dict into the README section, :func:`update_readme` replaces only the
text between ``<!-- bench:start -->`` and ``<!-- bench:end -->``, :func:`plot_results` draws the chart.
Used by ``benchmarks/run.py`` and ``benchmarks/render_readme.py``; not part of the installed package.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MARK_END", "MARK_START", "default_target", "plot_results", "render_markdown", "update_readme"]

MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"
BM25_FALLBACK = "bm25s, Lucene BM25 k1=1.5, b=0.75"


# -- number formats --------------------------------------------------------------------------------
def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


def _num(x: float) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ci(d: dict[str, float] | None, nd: int = 3) -> str:
    if not d or d.get("diff") is None:
        return "–"
    sign = "+" if d["diff"] >= 0 else "−"
    return f"{sign}{abs(d['diff']):.{nd}f} [{d['lo']:+.{nd}f}, {d['hi']:+.{nd}f}]".replace("-", "−")


def _threads_note(results: dict[str, Any]) -> str:
    t = results.get("threads") or {}
    if not t or not all(isinstance(v, dict) for v in t.values()):
        return str(results.get("machine", {}).get("torch_threads", "?"))
    return ", ".join(f"{sec} {v.get('used')}" for sec, v in t.items()) + (
        " (auto: 1 when the load average, less this run's own use, exceeds the core count)" if any("auto" in str(v.get("why")) for v in t.values()) else "")


def _set_title(key: str, s: dict[str, Any]) -> str:
    titles = {"ieb-eft": "IEB eft_test (LOO)", "ieb-ift": "IEB ift_test (pool→query; P@4 ≤ 0.25)", "bundled": "bundled pool (held-out)"}
    return titles.get(key, key)


# -- markdown --------------------------------------------------------------------------------------
def _header_md(results: dict[str, Any], json_path: str | None, png_path: str | None) -> list[str]:
    m = results.get("machine", {})
    cfg = results.get("config", {})
    cmd = "pie-retriever bench --quick" if cfg.get("quick") else "pie-retriever bench"
    if cfg.get("threads") not in (None, "auto"):
        cmd += f" --threads {cfg['threads']}"
    lines = ["## Benchmark: PIE vs BM25", ""]
    lines.append(f"Rendered by `benchmarks/render_readme.py` from `{json_path or 'results/' + results.get('name', 'bench') + '.json'}` "
                 f"(command: `{cmd}`; {results.get('created', '')}). {'Quick' if cfg.get('quick') else 'Full'} run: "
                 f"{_num(results.get('wall_s', 0) / 60)} min wall on "
                 f"{m.get('cpu_count')} × {m.get('cpu', '?')}, torch {results.get('versions', {}).get('torch', '?')}, "
                 f"torch threads per section: {_threads_note(results)}, "
                 f"load average {m.get('load_average', ['?'])[0]} at start / {(m.get('load_average_end') or ['?'])[0]} at end "
                 "(the machine was shared, so speed figures are best read as ratios measured in the same run).")
    lines.append("")
    lines.append("Rerun it: `pie-retriever bench` (needs the `bench` extra; IEB files from `--data DIR` or `$PIE_IEB_DIR`), "
                 "`pie-retriever bench --quick` for a one-minute smoke run, or `pie-retriever bench --pool FILE --label-field NAME` "
                 "for task-match quality on your own labelled pool; `python benchmarks/run.py` runs it and renders this section.")
    lines.append("")
    if png_path:
        lines += [f"![P@4 by method and set; query latency by pool size]({png_path})", ""]
    return lines


def _quality_cell(s: dict[str, Any], name: str) -> list[str]:
    """The P@4 and Δ cells of one method on one set (best untrained P@4 in bold, † when trained on the set)."""
    r = s["results"].get(name, {})
    if "p@4" not in r:
        return ["n/a" if "error" in r else "skipped", "–"]
    best = max((v.get("p@4", -1) for v in s["results"].values() if "p@4" in v and not v.get("trained_on_set")), default=None)
    val = _f(r.get("p@4"))
    val = f"**{val}**" if r.get("p@4") == best else val
    return [val + (" †" if r.get("trained_on_set") else ""), _ci(r.get("p@4_minus_bm25"))]


def _quality_details_md(key: str, s: dict[str, Any], methods: dict[str, Any]) -> list[str]:
    lines = [f"<details><summary>{_set_title(key, s)}: {s['description']} — P@1, P@4, nDCG@10, MRR@10</summary>", ""]
    lines += [f"Pool {s['n_pool']:,}, {s['n_labels']} labels, {s['n_queries']:,} queries ({s['protocol']}).", ""]
    lines += ["| method | P@1 | P@4 | nDCG@10 | MRR@10 | seconds |", "|---|---:|---:|---:|---:|---:|"]
    for name, meta in methods.items():
        r = s["results"].get(name, {})
        if "p@4" not in r:
            why = r.get("error") or r.get("skipped") or "not run"
            lines.append(f"| {meta['label']} | {'n/a' if 'error' in r else 'skipped'}: {why[:90]} | | | | |")
            continue
        dagger = " †" if r.get("trained_on_set") else ""
        lines.append(f"| {meta['label']}{dagger} | {_f(r.get('p@1'))} | {_f(r.get('p@4'))} | {_f(r.get('ndcg@10'))} | "
                     f"{_f(r.get('mrr@10'))} | {_num(r.get('seconds', 0))} |")
    return lines + ["", "</details>", ""]


def _quality_md(results: dict[str, Any]) -> list[str]:
    q = results.get("quality")
    if not q:
        return []
    methods, sets = q["methods"], q["sets"]
    lines = ["### Task-match quality", ""]
    lines.append("A retrieved demonstration is relevant when it carries the query's task label. "
                 f"BM25: {results.get('bm25', BM25_FALLBACK)}. Embedding methods use cosine over exact (flat) search. "
                 "Δ = P@4 minus BM25's P@4 with a paired bootstrap 95% interval.")
    lines.append("")
    lines.append("| method | " + " | ".join(f"{_set_title(k, s)} P@4 | Δ vs BM25" for k, s in sets.items()) + " |")
    lines.append("|---|" + "---:|---:|" * len(sets))
    for name, meta in methods.items():
        cells = [c for s in sets.values() for c in _quality_cell(s, name)]
        lines.append(f"| {meta['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    if any(r.get("trained_on_set") for s in sets.values() for r in s["results"].values()):
        lines.append("† The model was trained on this set's task labels (its pie_artifact.json lists the set among its training "
                     "sources), so this "
                     "figure is not a held-out result; it is shown for completeness and excluded from the bold best.")
        lines.append("")
    lines.extend(_loss_notes(q))
    for key, s in sets.items():
        lines.extend(_quality_details_md(key, s, methods))
    return lines


def _icl_md(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    icl = results.get("icl")
    if icl:
        llm = icl.get("llm", {})
        lines += ["### In-context learning (SmolLM2-135M-Instruct)", ""]
        lines.append(f"{icl['n_queries']} held-out short-answer queries of the bundled pool ({len(icl.get('tasks', []))} tasks), "
                     f"k = {icl['k']} demonstrations in the Alpaca template, greedy decoding with "
                     f"{llm.get('backend')} ({llm.get('dtype')}), exact match after normalisation "
                     f"(lowercase, trimmed punctuation, canonical numbers); “gold in answer” is the lenient variant (the gold answer "
                     f"appears as whole words in the answer's first line). {icl['n_generations']} distinct prompts generated "
                     f"in {_num(icl['generation_s'])} s. Task match = share of the demonstrations with the query's task. "
                     "Δ = accuracy minus BM25's, paired bootstrap 95% interval.")
        lines += ["", "| demonstrations | exact match | Δ vs BM25 | gold in answer | task match of demos |", "|---|---:|---:|---:|---:|"]
        for name, cond in icl["conditions"].items():
            label = icl.get("labels", {}).get(name, name)
            lines.append(f"| {label} | {_f(cond['score'])} | {_ci(cond.get('minus_bm25')) if name != 'bm25' else '–'} | "
                         f"{_f(cond.get('contains'))} | {_f(cond.get('demo_task_match'), 2)} |")
        lines.append("")
    if results.get("icl_skipped"):
        lines += [f"In-context learning section skipped: {results['icl_skipped']}", ""]
    return lines


def _speed_table_md(sp: dict[str, Any]) -> list[str]:
    lines = ["| pool | PIE build demos/s | BM25 build demos/s | PIE p50 / p95 ms | BM25 p50 / p95 ms | p50 ratio | "
             "PIE batched q/s | BM25 batched q/s | PIE RSS B/demo | BM25 RSS B/demo |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sp["per_size"]:
        p, b, r = row["pie"], row["bm25"], row["ratios"]
        star = "" if p["encode_measured"] else "*"
        lines.append(
            f"| {row['n']:,} | {_num(p['build_demos_per_s'])}{star} | {_num(b['build_demos_per_s'])} | "
            f"{_num(p['single']['p50_ms'])} / {_num(p['single']['p95_ms'])} | {_num(b['single']['p50_ms'])} / {_num(b['single']['p95_ms'])} | "
            f"{_num(r['single_p50_pie_over_bm25'])}× | {_num(p['batched']['queries_per_s'])} | {_num(b['batched']['queries_per_s'])} | "
            f"{_num(p.get('rss_bytes_per_demo'))} | {_num(b.get('rss_bytes_per_demo'))} |")
    lines.append("")
    unmeasured = [row["n"] for row in sp["per_size"] if not row["pie"]["encode_measured"]]
    if unmeasured:
        lines.append(f"\\* {', '.join(f'{n:,}' for n in unmeasured)}: encoding time extrapolated from the {sp['encode_limit']:,}-demo build's "
                     "measured encoding rate; indexing (faiss add, bookkeeping) measured on perturbed copies of the real vectors.")
        lines.append("")
    return lines


def _speed_bullets_md(sp: dict[str, Any]) -> list[str]:
    ef, ep, last = sp["encoder_flops"], sp["encode_paths"], sp["per_size"][-1]
    ref = sp["matmul"][ef["reference_dtype"]]
    return [
        f"- Query encoding alone: p50 {_num(sp['query_encode']['p50_ms'])} ms; exact search alone at "
        f"{last['n']:,} demos: p50 {_num(last['pie']['search_only']['p50_ms'])} ms.",
        f"- Index size: {_num(last['pie']['index_file_bytes_per_demo'])} B/demo in `index.faiss` "
        f"({last['pie']['saved_bytes_per_demo']:.0f} B/demo for the whole saved folder); BM25 saved index "
        f"{_num(last['bm25']['saved_bytes_per_demo'])} B/demo. Peak RSS of the speed section: "
        f"{sp['peak_rss_bytes'] / 2**20:,.0f} MiB (process peak {sp['process_peak_rss_bytes'] / 2**20:,.0f} MiB).",
        f"- Encoder FLOP/s: {ef['core_flop_per_s'] / 1e9:.1f} GFLOP/s = {ef['core_fraction_of_matmul']:.0%} of a "
        f"{ref['shape'][0]}² {ef['reference_dtype']} torch matmul measured in the same run "
        f"({ref['flop_per_s'] / 1e9:.1f} GFLOP/s; "
        f"{ef['core_fraction_of_model_shaped_matmul']:.0%} of a model-shaped matmul). FLOPs counted by "
        "`torch.utils.flop_counter` (linear layers + attention at the padded shapes).",
        f"- Core encoding path (length-sorted batches{' + bf16 autocast' if ep['core_uses_bf16'] else ''}) vs a naive loop "
        f"(given order, pad to the longest in each batch, fp32), PIE prompt, {ep['n_texts']} IEB instructions: "
        f"**{ep['speedup_core_vs_naive']:.2f}×** ({_num(ep['texts_per_s']['core'])} vs {_num(ep['texts_per_s']['naive'])} texts/s; "
        f"sorted fp32 {_num(ep['texts_per_s'].get('sorted_fp32', float('nan')))}, unsorted bf16 "
        f"{_num(ep['texts_per_s'].get('unsorted_bf16', float('nan')))}); cosine of core vs naive vectors ≥ "
        f"{ep['cosine_core_vs_naive']['min']:.4f}.",
        "",
    ]


def _speed_backends_md(sp: dict[str, Any]) -> list[str]:
    """Rows per query backend × vector storage: single-query latency idle and on a loaded machine."""
    b = sp.get("backends")
    if not b:
        return []
    la, lb = b.get("load_idle") or ["?"], b.get("load_loaded_end") or ["?"]
    k = b.get("k", 4)
    lines = [f"Per query backend and vector storage, {b['n']:,} demonstrations, flat index, k = {k}: single query (encode + "
             f"search) one at a time, idle and on a loaded machine ({b['hog_processes']} busy-loop processes started by "
             f"the benchmark; 1-min load average {la[0]} idle, {lb[0]} loaded). Recall@{k}: share of the exact fp32 "
             "top-k found. " + " ".join(f"`{n}`: {d}." for n, d in b["backends"].items()), "",
             f"| backend | vectors | recall@{k} | p50 / p99 ms idle | p50 / p99 ms loaded | batched q/s |",
             "|---|---|---:|---:|---:|---:|"]
    for row in b["rows"]:
        idle, loaded = row["single_idle"], row["single_loaded"]
        lines.append(f"| {row['backend']} | {row['vectors']} | {row[f'recall_at_{k}']:.3f} | {_num(idle['p50_ms'])} / {_num(idle['p99_ms'])} | "
                     f"{_num(loaded['p50_ms'])} / {_num(loaded['p99_ms'])} | {_num(row['batched']['queries_per_s'])} |")
    for name, why in (b.get("skipped") or {}).items():
        lines.append(f"\n{name} skipped: {why}")
    return lines + [""]


def _speed_md(results: dict[str, Any]) -> list[str]:
    sp = results.get("speed")
    if not sp:
        return []
    first = sp["per_size"][0]["pie"]
    lines = [f"### Speed and memory ({sp.get('model')} + faiss flat vs BM25)", ""]
    lines.append(f"Synthetic pools from {sp['base_texts']['source']} ({sp['base_texts']['unique']:,} unique instructions; "
                 "beyond that, copies with a suffix such as “ Keep it short.”). k = 4; single queries one at a time "
                 f"(p50/p95 over {first['single']['n']} queries, query encoding included); batched = "
                 f"{first['batched']['batch']} queries in one call. RSS B/demo = resident memory a built "
                 "retriever keeps (texts, demonstration objects, vectors or BM25 matrix), measured by building it in a fresh "
                 "process, divided by the pool size; the encoder model itself is not included.")
    lines.append("")
    return lines + _speed_table_md(sp) + _speed_bullets_md(sp) + _speed_backends_md(sp)


def render_markdown(results: dict[str, Any], *, json_path: str | None = None, png_path: str | None = None) -> str:
    """The README section for a results dict (tables for each section that ran)."""
    lines = _header_md(results, json_path, png_path) + _quality_md(results) + _icl_md(results) + _speed_md(results)
    walls = results.get("section_wall_s", {})
    if walls:
        lines.append("Section wall times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in walls.items()) + ".")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _set_loss(key: str, s: dict[str, Any], method: str) -> tuple[str | None, str | None, str | None]:
    """``(worse, better, tasks)`` notes of ``method`` vs BM25 on one set (None where nothing to say)."""
    r, b = s["results"].get(method, {}), s["results"].get("bm25", {})
    if r.get("trained_on_set"):
        return None, None, None
    worse = better = tasks = None
    ci = r.get("p@4_minus_bm25")
    if ci and ci.get("hi") is not None and ci["hi"] < 0:
        worse = f"{_set_title(key, s)} ({_f(r['p@4'])} vs {_f(b['p@4'])})"
    elif ci and ci.get("lo") is not None and ci["lo"] > 0:
        better = f"{_set_title(key, s)} ({_f(r['p@4'])} vs {_f(b['p@4'])})"
    mine, theirs = r.get("p@4_by_task", {}), b.get("p@4_by_task", {})
    lost = sorted(((theirs[t] - v, t, v, theirs[t]) for t, v in mine.items() if t in theirs and v < theirs[t]), reverse=True)
    if lost:
        tasks = (f"{_set_title(key, s)}: " + ", ".join(f"`{t}` {v:.2f} vs {w:.2f}" for _, t, v, w in lost[:8])
                 + (f" (+{len(lost) - 8} more)" if len(lost) > 8 else ""))
    return worse, better, tasks


def _loss_notes(q: dict[str, Any], method: str = "default") -> list[str]:
    """Bullets: where ``method`` trails BM25 (whole sets whose interval is below 0; tasks of small sets)."""
    label = q["methods"].get(method, {}).get("label")
    if not label or "bm25" not in q["methods"]:
        return []
    notes = [_set_loss(key, s, method) for key, s in q["sets"].items()]
    worse, better, tasks = ([n[i] for n in notes if n[i]] for i in range(3))
    out = []
    if better:
        out.append(f"- {label} beats BM25 (95% interval above 0) on: {'; '.join(better)}.")
    if worse:
        out.append(f"- {label} trails BM25 (95% interval below 0) on: {'; '.join(worse)}.")
    if tasks:
        out.append(f"- Tasks where {label} has a lower P@4 than BM25 — " + "; ".join(tasks) + ".")
    return out + ([""] if out else [])


def default_target(repo: Path) -> Path:
    """The page holding the bench markers: ``docs/benchmark.md``, else ``README.md`` (older checkouts)."""
    for candidate in (repo / "docs" / "benchmark.md", repo / "README.md"):
        if candidate.is_file() and MARK_START in candidate.read_text(encoding="utf-8"):
            return candidate
    return repo / "docs" / "benchmark.md"


def update_readme(readme: str | os.PathLike, markdown: str) -> bool:
    """Replace the text between the bench markers of ``readme`` (re-read now; other sections untouched).

    Returns True when the file changed. Raises if the markers are missing or out of order.
    """
    from pie_retriever._util import atomic_write_text
    from pie_retriever.errors import ConfigError

    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    i, j = text.find(MARK_START), text.find(MARK_END)
    if i == -1 or j == -1 or j < i:
        msg = f"{path} has no '{MARK_START}' … '{MARK_END}' block; add the two markers where the benchmark section goes."
        raise ConfigError(msg)
    new = text[: i + len(MARK_START)] + "\n" + markdown.rstrip() + "\n" + text[j:]
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


# -- chart -----------------------------------------------------------------------------------------
_COLORS = {"bm25": "#7f7f7f", "tfidf": "#bcbd22", "minilm": "#1f77b4", "pie-zeroshot": "#9467bd", "pie-minilm": "#e377c2", "default": "#d62728",
           "smollm2-pie": "#ff7f0e"}


def _plot_quality(ax: Any, q: dict[str, Any]) -> None:
    sets = list(q["sets"])
    names = list(q["methods"])
    width = 0.8 / max(1, len(names))
    x = np.arange(len(sets))
    for j, name in enumerate(names):
        vals = [q["sets"][s]["results"].get(name, {}).get("p@4", np.nan) for s in sets]
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, label=q["methods"][name]["label"],
                      color=_COLORS.get(name), edgecolor="black" if name == "bm25" else None, linewidth=0.6)
        if name == "default":
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    bm = [q["sets"][s]["results"].get("bm25", {}).get("p@4") for s in sets]
    for xi, v in zip(x, bm):
        if v is not None:
            ax.hlines(v, xi - 0.42, xi + 0.42, colors="black", linestyles=":", linewidth=0.8)
    ax.set_xticks(x, [textwrap.fill(_set_title(s, q["sets"][s]), 24) for s in sets], fontsize=8)  # wrapped: no overlap
    ax.set_ylabel("P@4 (same task label)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Task-match quality (dotted: BM25)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)


def _plot_speed(ax: Any, sp: dict[str, Any]) -> None:
    ns = [r["n"] for r in sp["per_size"]]
    pie_c, bm_c = _COLORS["default"], _COLORS["bm25"]
    ax.plot(ns, [r["pie"]["single"]["p50_ms"] for r in sp["per_size"]], "o-", color=pie_c, label=f"PIE ({sp.get('model')}) p50")
    ax.plot(ns, [r["pie"]["single"]["p95_ms"] for r in sp["per_size"]], "o--", color=pie_c, alpha=0.5, label="PIE p95")
    ax.plot(ns, [r["bm25"]["single"]["p50_ms"] for r in sp["per_size"]], "s-", color=bm_c, label="BM25 p50")
    ax.plot(ns, [r["bm25"]["single"]["p95_ms"] for r in sp["per_size"]], "s--", color=bm_c, alpha=0.5, label="BM25 p95")
    ax.plot(ns, [r["pie"]["search_only"]["p50_ms"] for r in sp["per_size"]], "^:", color=pie_c, alpha=0.7,
            label="PIE search only p50 (no query encoding)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pool size (demonstrations)")
    ax.set_ylabel("single-query latency (ms)")
    ax.set_title("Latency by pool size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def plot_results(results: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """PNG: P@4 by method on each set (left) and single-query p50 latency by pool size (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(draw, part) for draw, part in ((_plot_quality, results.get("quality")), (_plot_speed, results.get("speed"))) if part]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), dpi=100)
    for ax, (draw, part) in zip(np.atleast_1d(axes), panels):
        draw(ax, part)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
