"""ICL benchmark v2: task + content selection with SmolLM2-135M, content_weight chosen on dev, reported on test.

    python benchmarks/icl_v2.py                        # the default task model, vLLM (bf16) → results/icl_v2.json, tables printed
    python benchmarks/icl_v2.py --backend transformers --dtype float32 --limit 4   # a small smoke run
    python benchmarks/icl_v2.py --task-model pie-minilm --out results/icl_v2_short.json   # another task model

The protocol is :mod:`pie_retriever.evaluation.bench.icl_v2` (sets: the bundled pool and the templated-prompt set; dev/test
split per task; the (scorer, content_weight) pair with the best dev score is chosen; the test table reports every
row with paired bootstrap intervals). The tables are in docs/selection.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parents[1]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/icl_v2.py", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="vllm", choices=["vllm", "transformers"], help="LLM backend (default: %(default)s)")
    p.add_argument("--dtype", default="bfloat16", help="LLM dtype (default: %(default)s)")
    p.add_argument("--model", default="smollm2", help="LLM (default: %(default)s)")
    p.add_argument("--task-model", default=None, help="task encoder of PIE (default: the library default model)")
    p.add_argument("--weights", type=_floats, default=(0.1, 0.25, 0.5, 1.0), help="content weights tried on dev (default: 0.1,0.25,0.5,1)")
    p.add_argument("--scorers", default="bm25,minilm", help="content scorers tried on dev (default: %(default)s)")
    p.add_argument("--sets", default="bundled,templated", help="ICL sets (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="at most N queries per set and split (default: all)")
    p.add_argument("-k", type=int, default=4, help="demonstrations per prompt (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the encoders and the transformers backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "results" / "icl_v2.json"), help="results JSON (default: %(default)s)")
    p.add_argument("--render", action="store_true",
                   help="only write the tables of results/icl_v2.json (and icl_v2_lc.json) into docs/selection.md")
    return p


RENDERED = {"icl-v2": "icl_v2.json", "icl-v2-lc": "icl_v2_lc.json"}  # docs/selection.md marker -> results file


def render() -> int:
    """The tables of each results file between its markers of docs/selection.md, with the run's conditions."""
    from pie_retriever._util import atomic_write_text
    from pie_retriever.evaluation.bench.icl_v2 import format_tables

    doc = REPO / "docs" / "selection.md"
    text = doc.read_text(encoding="utf-8")
    for marker, name in RENDERED.items():
        path = REPO / "results" / name
        start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
        if not path.is_file() or start not in text:
            continue
        res = json.loads(path.read_text(encoding="utf-8"))
        load = res.get("machine", {}).get("load_average")
        chosen = "task only" if res["chosen"]["content_weight"] == 0 else res["chosen"]["condition"]
        head = (f"`{res['command'].strip()}`: task model `{res['task_model']}`, {res['llm']['backend']}:{res['llm']['model']} "
                f"({res['llm']['dtype']}), {res['wall_s'] / 60:.1f} min, 1-minute load average at start "
                f"{load[0] if load else '?'} on 2 cores, {res['created']}. Chosen on dev: **{chosen}** "
                f"(scorer {res['chosen']['scorer']}, content_weight {res['chosen']['content_weight']:g}); rule: {res['chosen']['rule']}.\n\n")
        body = head + format_tables(res)
        text = text[: text.index(start) + len(start)] + "\n" + body + text[text.index(end):]
        print(f"rendered {name} into docs/selection.md")
    atomic_write_text(doc, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        return render()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from pie_retriever._util import atomic_write_text
    from pie_retriever.evaluation.bench.icl_v2 import ICLv2Config, format_tables, run_icl_v2
    from pie_retriever.evaluation.bench.runner import machine_info, to_jsonable

    cfg = ICLv2Config(sets=tuple(args.sets.split(",")), k=args.k, backend=args.backend, model=args.model, dtype=args.dtype,
                      weights=args.weights, scorers=tuple(args.scorers.split(",")), task_model=args.task_model, seed=args.seed,
                      limit=args.limit)
    machine = machine_info()
    started = time.perf_counter()
    results = run_icl_v2(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    results["machine"] = machine
    results["command"] = "python benchmarks/icl_v2.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results["script_wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    atomic_write_text(out, json.dumps(to_jsonable(results), indent=1, ensure_ascii=False) + "\n")
    print(format_tables(results))
    print(f"wrote {out} ({results['script_wall_s'] / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
