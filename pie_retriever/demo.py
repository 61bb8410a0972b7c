"""`pie-retriever demo`: index the bundled pool offline and show PIE's picks next to BM25's."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time

# Queries shown side by side: a task asked about a topic the pool also covers under other tasks.
SHOWCASE = [
    "Write a limerick about tax law.",
    "Summarize this paragraph about volcanoes in one sentence.",
    "Is the sentiment of this coffee shop review positive or negative?",
    "Translate this sentence about trains into Spanish.",
    "Give me a catchy slogan for a football club.",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model for the PIE side (default: the library default)")
    p.add_argument("-k", type=int, default=4, help="demonstrations per query (default: %(default)s)")
    p.add_argument("--query", action="append", default=None, help="a query of your own (repeatable); replaces the showcase queries")


def task_match_rate(hit_lists, tasks) -> float:
    """Share of retrieved demonstrations whose metadata task equals the query's task."""
    total = sum(len(h) for h in hit_lists)
    good = sum(sum(hit.demonstration.metadata.get("task") == t for hit in hits) for hits, t in zip(hit_lists, tasks))
    return good / total if total else 0.0


def _cell(hit, want: str | None, width: int) -> str:
    task = hit.demonstration.metadata.get("task", "?")
    mark = "" if want is None else ("✓ " if task == want else "✗ ")
    text = f"{mark}[{task}] {hit.demonstration.instruction}"
    return textwrap.shorten(text, width=width, placeholder="…").ljust(width)


def run(args: argparse.Namespace) -> int:
    from pie_retriever.encoders.models import DEFAULT_MODEL, describe_aliases
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.pool.pools import bundled_pool_path, load_bundled_pool, load_bundled_queries
    from pie_retriever.prompting.fewshot import format_few_shot
    from pie_retriever.retrieval.bm25 import BM25Retriever
    from pie_retriever.retrieval.retriever import PIERetriever

    model = args.model or DEFAULT_MODEL
    pool = load_bundled_pool()
    held_out = load_bundled_queries()
    tasks = sorted({d.metadata["task"] for d in pool})
    out = sys.stdout
    print(f"Bundled pool: {len(pool)} demonstrations, {len(tasks)} tasks ({bundled_pool_path().name}); "
          f"{len(held_out)} held-out queries.", file=out)
    desc = describe_aliases().get(model, model)
    print(f"PIE side: model {model!r}: {desc}", file=out)
    start = time.perf_counter()
    encoder = TransformerEncoder(model)
    pie = PIERetriever.from_demonstrations(pool, encoder)
    bm25 = BM25Retriever(pool)
    print(f"  prompt={'pie' if 'task intention' in encoder.prompt else 'plain'}, pooling={encoder.pooling}; "
          f"indexed in {time.perf_counter() - start:.1f}s. BM25 side: bm25s, English stopwords, k1=1.5, b=0.75.\n", file=out)

    queries = args.query or SHOWCASE
    k = args.k
    guessed = {}
    if not args.query:
        # the showcase queries' tasks, from the closest held-out query with a label (for the ✓/✗ marks)
        guessed = {q: _guess_task(q, held_out, pool) for q in queries}
    width = 58
    pie_hits = pie.retrieve_batch(queries, k=k)
    bm_hits = bm25.retrieve_batch(queries, k=k)
    for q, ph, bh in zip(queries, pie_hits, bm_hits):
        want = guessed.get(q)
        print(f"Query: {q}" + (f"   (task: {want})" if want else ""), file=out)
        print(f"  {'PIE (' + model + ')':<{width}}  {'BM25':<{width}}", file=out)
        for a, b in zip(ph, bh):
            print(f"  {_cell(a, want, width)}  {_cell(b, want, width)}", file=out)
        print(file=out)

    q_tasks = [d.metadata["task"] for d in held_out]
    pie_rate = task_match_rate(pie.retrieve_batch([d.instruction for d in held_out], k=k), q_tasks)
    bm_rate = task_match_rate(bm25.retrieve_batch([d.instruction for d in held_out], k=k), q_tasks)
    print(f"Task-match rate over all {len(held_out)} held-out queries (share of the top-{k} with the query's task):", file=out)
    print(f"  PIE ({model}): {pie_rate:.3f}    BM25: {bm_rate:.3f}\n", file=out)

    q = queries[0]
    print(f"Few-shot prompt PIE would send for {q!r}:", file=out)
    print("-" * 100, file=out)
    print(format_few_shot(pie_hits[0], q), file=out)
    print("-" * 100, file=out)
    return 0


def _guess_task(query: str, held_out, pool) -> str | None:
    """Task label of a showcase query, read from the held-out set when the same query is labelled there."""
    for d in list(held_out) + list(pool):
        if d.instruction.strip().lower() == query.strip().lower():
            return d.metadata.get("task")
    return SHOWCASE_TASKS.get(query)


SHOWCASE_TASKS: dict[str, str] = {
    "Write a limerick about tax law.": "write|poem",
    "Summarize this paragraph about volcanoes in one sentence.": "summarize|text",
    "Is the sentiment of this coffee shop review positive or negative?": "classify|sentiment",
    "Translate this sentence about trains into Spanish.": "translate|sentence",
    "Give me a catchy slogan for a football club.": "create|slogan",
}
