"""Before/after in LangChain: the same FewShotPromptTemplate with LangChain's SemanticSimilarityExampleSelector
(plain all-MiniLM-L6-v2 over an InMemoryVectorStore) and with PIEExampleSelector (the library's default model).

On the bundled pool (249 demonstrations, 30 tasks) and its 117 held-out queries, it prints the examples each
selector picks for three queries and the task-match rate of each over all held-out queries (share of the k
picked examples whose metadata.task equals the query's), and writes results/langchain_before_after.json.

    python benchmarks/langchain_before_after.py [-k 4] [--out results/langchain_before_after.json]

Everything runs offline. "Before" embeds with LangChain's own HuggingFaceEmbeddings (langchain-community,
sentence-transformers) pointed at the packaged MiniLM when those are installed, else with
PIEEmbeddings("minilm", prompt="plain"), which computes the same vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import textwrap
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# Held-out queries whose topic the pool covers under other tasks (the trap of the bundled pool).
SHOWCASE_IDS = ["q-write-poem-01", "q-identify-language-01", "q-convert-unit-01"]
PREFIX = "Complete the last instruction the way the examples do."
EXAMPLE_TEMPLATE = "Instruction: {instruction}\nInput: {input}\nResponse: {output}"
SUFFIX = "Instruction: {instruction}\nInput: {input}\nResponse:"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pie-retriever", "langchain-core", "langchain-community", "sentence-transformers", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def baseline_embeddings():
    """LangChain's HuggingFaceEmbeddings on the packaged MiniLM if available, else plain-prompt PIEEmbeddings."""
    from pie_retriever.encoders.models import resolve_model

    path = str(resolve_model("minilm").path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.embeddings import HuggingFaceEmbeddings

            emb = HuggingFaceEmbeddings(model_name=path, encode_kwargs={"normalize_embeddings": True})
        return emb, f"langchain_community HuggingFaceEmbeddings(all-MiniLM-L6-v2 at {path}, normalized)"
    except Exception as exc:  # any failure: fall back to the same model through PIEEmbeddings
        from pie_retriever.integrations.langchain import PIEEmbeddings

        reason = f"{type(exc).__name__}: {exc}"[:120]
        return PIEEmbeddings("minilm", prompt="plain"), f"PIEEmbeddings('minilm', prompt='plain') (HuggingFaceEmbeddings unavailable: {reason})"


def task_match(picks: list[list[dict]], tasks: list[str]) -> dict[str, float]:
    total = sum(len(p) for p in picks)
    hits = sum(sum(e["task"] == t for e in p) for p, t in zip(picks, tasks))
    top1 = sum(bool(p) and p[0]["task"] == t for p, t in zip(picks, tasks))
    return {"task_match": round(hits / total, 4) if total else 0.0, "top1_task_match": round(top1 / len(tasks), 4)}


def markdown(result: dict) -> str:
    """The README block: the command, the rates, and the picks for the showcase queries."""
    b, a = result["before"], result["after"]
    lines = [
        "```bash",
        result["command"] + "   # writes results/langchain_before_after.json",
        "```",
        "",
        f"| selector (same FewShotPromptTemplate, k={result['k']}) | task match, {result['n_queries']} held-out queries | top-1 task match |",
        "|---|---|---|",
        f"| before: `SemanticSimilarityExampleSelector`, MiniLM | {b['task_match']:.3f} | {b['top1_task_match']:.3f} |",
        f"| after: `PIEExampleSelector`, {'default ' if a['model'] == a.get('default_model') else ''}model `{a['model']}` | {a['task_match']:.3f} | {a['top1_task_match']:.3f} |",
        "",
    ]
    for row in result["showcase"]:
        lines.append(f"*{row['query']}* (task `{row['task']}`)")
        lines.append("")
        lines.append("| # | before (MiniLM) | after (PIE) |")
        lines.append("|---|---|---|")
        for i, (x, y) in enumerate(zip(row["before"], row["after"]), start=1):
            cells = []
            for e in (x, y):
                mark = "✓" if e["task"] == row["task"] else "✗"
                cells.append(f"{mark} `{e['task']}` {e['instruction']}".replace("|", "\\|"))
            lines.append(f"| {i} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=4, help="examples per query (default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "results" / "langchain_before_after.json"))
    parser.add_argument("--model", default=None, help="model for the PIE side (default: the library's DEFAULT_MODEL)")
    parser.add_argument("--markdown", action="store_true", help="also print the README block")
    parser.add_argument("--from-json", default=None, help="only print the README block of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(Path(args.from_json).read_text(encoding="utf-8"))), end="")
        return 0

    from langchain_core.example_selectors import SemanticSimilarityExampleSelector
    from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate
    from langchain_core.vectorstores import InMemoryVectorStore

    from pie_retriever import load_bundled_pool, load_bundled_queries
    from pie_retriever.encoders.models import DEFAULT_MODEL, describe_aliases
    from pie_retriever.integrations.langchain import PIEExampleSelector

    pool, queries = load_bundled_pool(), load_bundled_queries()
    examples = [{"id": d.id, "instruction": d.instruction, "input": d.input, "output": d.output, "task": d.metadata["task"]} for d in pool]
    inputs = [{"instruction": q.instruction, "input": q.input} for q in queries]
    tasks = [q.metadata["task"] for q in queries]
    k = args.k
    print(f"Bundled pool: {len(pool)} demonstrations, {len({e['task'] for e in examples})} tasks; {len(queries)} held-out queries; k={k}.")

    t0 = time.perf_counter()
    embeddings, before_desc = baseline_embeddings()
    before = SemanticSimilarityExampleSelector.from_examples(examples, embeddings, InMemoryVectorStore, k=k, input_keys=["instruction"])
    t1 = time.perf_counter()
    # the one-line swap: same examples, same input_keys, the default (task-tuned when shipped) model
    model = args.model or DEFAULT_MODEL
    after = PIEExampleSelector.from_examples(examples, model, k=k, input_keys=["instruction"])
    t2 = time.perf_counter()
    which = "default model" if model == DEFAULT_MODEL else "model"
    after_desc = f"PIEExampleSelector, {which} {model!r}: {describe_aliases().get(model, model)}"
    print(f"Before: SemanticSimilarityExampleSelector + InMemoryVectorStore + {before_desc} (indexed in {t1 - t0:.1f}s)")
    print(f"After:  {after_desc} (indexed in {t2 - t1:.1f}s)\n")

    example_prompt = PromptTemplate.from_template(EXAMPLE_TEMPLATE)
    prompts = {
        name: FewShotPromptTemplate(example_selector=sel, example_prompt=example_prompt, prefix=PREFIX, suffix=SUFFIX, input_variables=["instruction", "input"])
        for name, sel in (("before", before), ("after", after))
    }

    by_id = {q.id: i for i, q in enumerate(queries)}
    showcase = []
    for qid in SHOWCASE_IDS:
        i = by_id[qid]
        row = {"id": qid, "query": queries[i].instruction, "task": tasks[i]}
        print(f"Query: {queries[i].instruction}   (task: {tasks[i]})")
        for name, sel in (("before", before), ("after", after)):
            picks = sel.select_examples(inputs[i])
            row[name] = [{"id": e["id"], "task": e["task"], "instruction": e["instruction"]} for e in picks]
            row[f"prompt_{name}"] = prompts[name].format(**inputs[i])
            good = sum(e["task"] == tasks[i] for e in picks)
            print(f"  {name:<6} ({good}/{len(picks)} same task)")
            for e in picks:
                mark = "✓" if e["task"] == tasks[i] else "✗"
                print("    " + textwrap.shorten(f"{mark} [{e['task']}] {e['instruction']}", width=100, placeholder="…"))
        showcase.append(row)
        print()

    scores = {}
    for name, sel in (("before", before), ("after", after)):
        start = time.perf_counter()
        picks = [sel.select_examples(x) for x in inputs]
        scores[name] = {**task_match(picks, tasks), "seconds": round(time.perf_counter() - start, 2)}
    print(f"Task-match rate over all {len(queries)} held-out queries (share of the {k} picks with the query's task):")
    for name, desc in (("before", "SemanticSimilarityExampleSelector (MiniLM)"), ("after", f"PIEExampleSelector ({model})")):
        s = scores[name]
        print(f"  {name:<6} {desc:<48} {s['task_match']:.3f}   top-1 {s['top1_task_match']:.3f}")

    result = {
        "benchmark": "langchain_before_after",
        "pool": "pie_retriever/pool/data/demo_pool.jsonl", "queries": "pie_retriever/pool/data/demo_queries.jsonl",
        "n_pool": len(pool), "n_queries": len(queries), "k": k,
        "before": {"selector": "langchain_core SemanticSimilarityExampleSelector + InMemoryVectorStore", "embeddings": before_desc, **scores["before"]},
        "after": {"selector": "pie_retriever PIEExampleSelector", "model": model, "default_model": DEFAULT_MODEL, "description": after_desc, **scores["after"]},
        "few_shot_prompt": {"prefix": PREFIX, "example_prompt": EXAMPLE_TEMPLATE, "suffix": SUFFIX},
        "showcase": showcase,
        "versions": _versions(),
        "command": "python benchmarks/langchain_before_after.py",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nWrote {out}")
    if args.markdown:
        print("\n" + markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
