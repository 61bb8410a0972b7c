"""``pie-retriever eval ieb --data DIR``: the IEB protocols for models, BM25 and TF-IDF.

Models are given as ``--model SPEC`` (repeatable); per-model options follow an ``@``:
``--model smollm2@pooling=last --model smollm2@pooling=last2,name=smollm2-last2``. Keys: ``pooling``,
``prompt``, ``name``, ``batch_size``, ``max_length``, ``precision``. ``--pooling`` and ``--prompt`` set
defaults for every model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

from pie_retriever._util import atomic_write_text, library_versions
from pie_retriever.encoders.transformer import POOLINGS
from pie_retriever.errors import EvalArgumentError

SUITES: dict[str, str] = {"ieb": "IEB: leave-one-out task P@1/P@4/MRR, KMeans ARI/purity/homogeneity, IIS Spearman"}
MODEL_OPTIONS: dict[str, type] = {"pooling": str, "prompt": str, "name": str, "batch_size": int, "max_length": int, "precision": str}
COLUMNS = [("p@1", "P@1"), ("p@4", "P@4"), ("mrr", "MRR"), ("ari", "ARI"), ("purity", "purity"),
           ("homogeneity", "homog."), ("iis_spearman", "IIS ρ"), ("iis_auc", "IIS AUC")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", choices=list(SUITES), help="benchmark suite: " + "; ".join(f"{k}: {v}" for k, v in SUITES.items()))
    p.add_argument("--data", default=None,
                   help="IEB folder with eft_test.json and intention_similarity_test.json (default: $PIE_IEB_DIR; one of the two is required)")
    p.add_argument("--model", action="append", default=[], metavar="SPEC[@key=value,...]",
                   help="model alias, folder or artifact, with optional per-model options (pooling, prompt, name, "
                        "batch_size, max_length, precision); repeatable. Default: the library default model")
    p.add_argument("--bm25", action="store_true", help="also evaluate BM25 (bm25s; retrieval only)")
    p.add_argument("--tfidf", action="store_true", help="also evaluate TF-IDF (scikit-learn)")
    p.add_argument("--pooling", default=None, choices=list(POOLINGS), help="default pooling for every --model")
    p.add_argument("--prompt", default=None, help="default prompt (pie, plain or a template) for every --model")
    p.add_argument("--no-clustering", action="store_true", help="skip KMeans (the slowest protocol for TF-IDF)")
    p.add_argument("--seed", type=int, default=0, help="KMeans random_state (default: %(default)s, the paper's)")
    p.add_argument("--output", "-o", default="ieb_eval.json",
                   help="results JSON (default: %(default)s in the current folder; an existing file needs --force or --merge)")
    p.add_argument("--merge", action="store_true", help="keep results of other methods already in --output (same name is replaced)")
    p.add_argument("--force", action="store_true", help="replace an existing --output (such as the shipped results/ieb_eval.json)")
    p.add_argument("--check", nargs="?", const="", default=None, metavar="DIR",
                   help="only check that DIR (default: --data / $PIE_IEB_DIR) holds the four IEB files eval, bench and "
                        "train read, and say where to get the missing ones; evaluates nothing")


def parse_model(spec: str) -> tuple[str, dict[str, Any]]:
    """``"smollm2@pooling=last,name=x"`` → ``("smollm2", {"pooling": "last", "name": "x"})``."""
    model, sep, rest = spec.partition("@")
    options: dict[str, Any] = {}
    if sep:
        # split on commas that start a new key=value, so a name may itself contain commas
        items = re.split(r",(?=\s*(?:" + "|".join(MODEL_OPTIONS) + r")=)", rest)
        for item in filter(None, (s.strip() for s in items)):
            key, eq, value = item.partition("=")
            if not eq or key not in MODEL_OPTIONS:
                msg = f"Bad model option {item!r} in {spec!r}; use key=value with key in: {', '.join(MODEL_OPTIONS)}."
                raise EvalArgumentError(msg)
            try:
                options[key] = MODEL_OPTIONS[key](value)
            except ValueError as exc:
                msg = f"Model option {key}={value!r} in {spec!r} must be {MODEL_OPTIONS[key].__name__}."
                raise EvalArgumentError(msg) from exc
    if not model:
        msg = f"Empty model spec in {spec!r}."
        raise EvalArgumentError(msg)
    return model, options


def format_table(results: list[dict[str, Any]]) -> str:
    head = "| method | " + " | ".join(label for _, label in COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(COLUMNS)
    rows = [head, sep]
    for r in results:
        cells = [("–" if r.get(key) is None else f"{r[key]:.3f}") for key, _ in COLUMNS]
        rows.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


#: Distributions whose versions go into the eval results JSON.
VERSIONED = ("pie-retriever", "torch", "transformers", "bm25s", "scikit-learn", "scipy", "numpy")


def _data_dir(value: str | None) -> Path:
    """The IEB folder (``--data`` or ``$PIE_IEB_DIR``), checked for the files the protocols read."""
    from pie_retriever.evaluation.ieb import EFT_TEST, IIS_TEST, resolve_ieb_dir

    data = resolve_ieb_dir(value)
    for needed in (EFT_TEST, IIS_TEST):
        if not (data / needed).is_file():
            msg = f"{data / needed} not found; --data must be the IEB folder holding {EFT_TEST} and {IIS_TEST}."
            raise FileNotFoundError(msg)
    return data


def _evaluate_model(spec: str, options: dict[str, Any], args: argparse.Namespace, data: Path, clustering: bool | None) -> dict[str, Any]:
    """Load one ``--model`` spec and run the IEB protocols on it."""
    from pie_retriever.encoders.prompts import prompt_name
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.ieb import evaluate
    from pie_retriever.evaluation.rankers import EmbeddingRanker

    options = dict(options)
    name = options.pop("name", None)
    options.setdefault("pooling", args.pooling)
    options.setdefault("prompt", args.prompt)
    t0 = time.perf_counter()
    encoder = TransformerEncoder(spec, **{k: v for k, v in options.items() if v is not None})
    load_s = time.perf_counter() - t0
    pname = prompt_name(encoder.prompt)
    label = name or f"{spec} ({pname} prompt, {encoder.pooling})"
    info = {"method": "embedding", "model": spec, "prompt": pname, "pooling": encoder.pooling,
            "max_length": encoder.max_length, "bf16": encoder.use_bf16, "load_seconds": round(load_s, 1)}
    return evaluate(EmbeddingRanker(encoder, show_progress=None), data, name=label, clustering=clustering, seed=args.seed, info=info)


def _write_results(args: argparse.Namespace, data: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``--output`` (merged with its earlier methods under ``--merge``); returns the rows written."""
    import torch

    out = Path(args.output)
    previous: list[dict[str, Any]] = []
    if args.merge and out.is_file():
        try:
            previous = json.loads(out.read_text()).get("results", [])
        except (json.JSONDecodeError, AttributeError):
            previous = []
    names = {r["name"] for r in results}
    merged = [r for r in previous if r.get("name") not in names] + results
    payload = {
        "suite": args.suite, "data": str(data),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "versions": library_versions(VERSIONED),
        "protocol": {
            "retrieval": "leave-one-out over every eft_test sample; relevant = same label; MRR within top 10",
            "clustering": f"KMeans(n_clusters=#labels, random_state={args.seed}, n_init='auto') on eft_test embeddings",
            "similarity": "Spearman(cosine of each intention_similarity_test pair, 0/1 label); also ROC-AUC, and "
                          "iis_spearman_max = the Spearman of a perfect separator without ties (the ceiling)",
        },
        "results": merged,
    }
    atomic_write_text(out, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return merged


def run(args: argparse.Namespace) -> int:
    from pie_retriever.evaluation.ieb import evaluate
    from pie_retriever.evaluation.rankers import BM25Ranker, TfidfRanker

    if args.check is not None:
        from pie_retriever.evaluation.ieb_check import check_ieb_folder

        return check_ieb_folder(args.check or args.data)
    data = _data_dir(args.data)
    from pie_retriever._util import check_output_target

    check_output_target(args.output, inputs=[str(data / n) for n in ("eft_test.json", "intention_similarity_test.json")],
                        force=args.force or args.merge, flag="--output")  # before the models load, not after
    models = [parse_model(m) for m in args.model]
    if not models and not (args.bm25 or args.tfidf):
        from pie_retriever.encoders.models import DEFAULT_MODEL

        models = [(DEFAULT_MODEL, {})]
    results: list[dict[str, Any]] = []
    clustering = False if args.no_clustering else None

    def report(result: dict[str, Any]) -> None:
        results.append(result)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k in dict(COLUMNS)}
        print(f"{result['name']}: {shown} ({result['seconds']['total']:.0f}s)", file=sys.stderr, flush=True)

    if args.bm25:
        report(evaluate(BM25Ranker(), data, name="BM25", info={"method": "bm25", "k1": 1.5, "b": 0.75}))
    if args.tfidf:
        report(evaluate(TfidfRanker(), data, name="TF-IDF", clustering=clustering, info={"method": "tfidf"}))
    for spec, options in models:
        report(_evaluate_model(spec, options, args, data, clustering))
    merged = _write_results(args, data, results)
    print(format_table(merged))
    ceiling = next((r["iis_spearman_max"] for r in merged if r.get("iis_spearman_max") is not None), None)
    if ceiling is not None:
        print(f"\nIIS ρ of a perfect separator without tied scores on these labels: {ceiling:.3f} "
              "(a 0/1 label caps Spearman; IIS AUC is the uncapped view).")
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0
