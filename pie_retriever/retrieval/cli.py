"""``pie-retriever index | search | add | delete``: build, query and edit a saved index from the shell.

Each command is a pair ``add_<name>_arguments(parser)`` / ``run_<name>(args) -> int`` that
:mod:`pie_retriever.cli` dispatches to (``COMMANDS`` names them ``"pie_retriever.retrieval.cli:<name>"``).

Conventions shared by the commands:

- ``--threads N`` sets torch's intra-op threads for encoding; without it :mod:`pie_retriever._threads`
  decides (1 thread for a single query, every core for a batch).
- Output targets are checked before the model loads, so a bad ``-o`` fails in milliseconds.
- JSON output ranks are **1-based**, like the text output (``Hit.rank`` in the Python API is 0-based).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from pie_retriever.encoders.transformer import POOLINGS
from pie_retriever.errors import ConfigError
from pie_retriever.index import INDEX_KINDS
from pie_retriever.pool.formats import add_field_arguments, field_map_from_args
from pie_retriever.retrieval.content import CONTENT_SCORERS, DEFAULT_CONTENT_SCORER, DEFAULT_CONTENT_WEIGHT

__all__ = [
    "add_add_arguments", "add_delete_arguments", "add_index_arguments", "add_search_arguments",
    "hit_record", "parse_filters", "read_queries", "read_query_records", "run_add", "saved_encoder", "run_delete", "run_index", "run_search",
]


def _add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch intra-op threads for encoding (default: 1 for a single query, every core for a batch)")


def _add_trust_arguments(p: argparse.ArgumentParser) -> None:
    """``--allow-remote`` / ``--trust-remote-code``: what a loaded index folder may cause (docs/reliability.md)."""
    p.add_argument("--allow-remote", action="append", default=None, metavar="URL",
                   help="let the index's own server URL or Milvus URI be used (repeatable; 'all' for any). By default "
                        "an index folder cannot choose where queries or your API key go ($PIE_ALLOW_REMOTE)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow an index whose encoder needs model code or engine options beyond the safe list "
                        "($PIE_TRUST_REMOTE_CODE); only for folders you trust")


def _load(args: argparse.Namespace, **kwargs: Any) -> Any:
    """``PIERetriever.load`` of ``args.index_dir`` under the policy of the trust flags."""
    from pie_retriever.retrieval.retriever import PIERetriever
    from pie_retriever.retrieval.trust import policy_arguments

    policy = policy_arguments(getattr(args, "allow_remote", None), getattr(args, "trust_remote_code", False))
    return PIERetriever.load(args.index_dir, trust_remote_code=policy.trust_remote_code,
                             allow_remote=policy.allow_remote, **kwargs)


# -- index ---------------------------------------------------------------------------------------------
def add_index_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file: JSONL, JSON list, Alpaca JSON, or IEB {label: {samples}} JSON")
    p.add_argument("-o", "--output", required=True, help="index folder to write (replaced atomically if it exists)")
    p.add_argument("--model", default=None, help="model alias, local folder or cached hub id (default: the library default)")
    p.add_argument("--prompt", default=None, help="prompt name (pie, plain) or template with {instruction}; default: the model's")
    p.add_argument("--pooling", default=None, choices=list(POOLINGS), help="pooling; default: the model's")
    p.add_argument("--index", default="flat", choices=list(INDEX_KINDS), help="index kind (default: %(default)s)")
    p.add_argument("--index-option", action="append", default=[], metavar="KEY=VALUE",
                   help="index option, repeatable; VALUE is JSON or a string (milvus: uri=pool.db or http://host:19530, collection=NAME)")
    p.add_argument("--embed-fields", default="instruction", help="comma-separated fields to embed (default: %(default)s)")
    p.add_argument("--dedupe", action="store_true", help="skip demonstrations whose embedded text is already indexed")
    p.add_argument("--label-field", default=None, help="copy this field to metadata.task")
    add_field_arguments(p)
    _add_threads_argument(p)
    p.add_argument("--content-weight", type=float, default=None, metavar="W",
                   help="the index's default content weight in [0, 1]: 0 = task match only (default: the library's, "
                        f"pie_retriever.retrieval.content.DEFAULT_CONTENT_WEIGHT = {DEFAULT_CONTENT_WEIGHT:g})")
    p.add_argument("--content-scorer", default=DEFAULT_CONTENT_SCORER, choices=[*CONTENT_SCORERS, "none"],
                   help="content scorer kept with the index for --content-weight (default: %(default)s; none: no "
                        "content scoring, a positive weight is then an error)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="encode in this process or on Ray actors (local Ray, or the cluster in RAY_ADDRESS); default: %(default)s")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="Ray actors encoding, one CPU each (default: %(default)s)")


def _index_options(items: Sequence[str]) -> dict[str, Any]:
    """``["uri=pool.db", "filter_fields=[\"task\"]"]`` → ``{"uri": "pool.db", "filter_fields": ["task"]}``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"--index-option expects KEY=VALUE, got {item!r} (e.g. --index-option uri=pool.db --index-option collection=pool)."
            raise ConfigError(msg)
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _build_retriever(args: argparse.Namespace, demos: list[Any], encoder: Any) -> Any:
    """Embed and index ``demos`` in this process (the place an ``--engine`` option hands off to another one)."""
    from pie_retriever.retrieval.retriever import PIERetriever

    fields, options = [f.strip() for f in args.embed_fields.split(",")], _index_options(args.index_option)
    content = {"content_weight": args.content_weight,
               "content_scorer": None if args.content_scorer == "none" else args.content_scorer}
    if args.engine == "ray":
        from pie_retriever.retrieval.distributed import build_with_ray

        return build_with_ray(demos, encoder, workers=args.workers, index=args.index, index_options=options,
                              embed_fields=fields, dedupe=args.dedupe, show_progress=True, **content)
    return PIERetriever.from_demonstrations(
        demos, encoder, index=args.index, index_options=options, embed_fields=fields, dedupe=args.dedupe, show_progress=True,
        **content,
    )


def run_index(args: argparse.Namespace) -> int:
    from pie_retriever._threads import apply_threads
    from pie_retriever.encoders import make_encoder
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.pool.pools import load_pool
    from pie_retriever.retrieval.persistence import check_save_target

    check_save_target(args.output)  # before the model loads and the pool is encoded
    demos = load_pool(args.pool, label_field=args.label_field, fields=field_map_from_args(args))
    encoder = make_encoder(args.model or DEFAULT_MODEL, prompt=args.prompt, pooling=args.pooling)  # an ONNX folder: OnnxEncoder
    threads = apply_threads(args.threads, len(demos))
    start = time.perf_counter()
    retriever = _build_retriever(args, demos, encoder)
    path = retriever.save(args.output)
    elapsed = time.perf_counter() - start
    print(f"Indexed {len(retriever)} demonstrations from {args.pool} with {encoder.model_spec} "
          f"({encoder.pooling} pooling, {threads} thread{'s' * (threads != 1)}) in {elapsed:.1f}s → {path}", file=sys.stderr)
    return 0


# -- search --------------------------------------------------------------------------------------------
def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", metavar="DIR", help="index folder written by `pie-retriever index`")
    p.add_argument("query", nargs="?", default=None, help="the instruction to find demonstrations for (or use --queries)")
    p.add_argument("--queries", metavar="FILE", default=None,
                   help="many queries, one model load, batched: a text file (one query per line), a JSONL/JSON pool "
                        "file (their instructions) or - for stdin; prints or writes JSON lines {query, hits}")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="with --queries: write the JSON lines here (atomically; never an input or a file inside an index folder)")
    p.add_argument("--force", action="store_true", help="replace an existing -o file")
    p.add_argument("-k", type=int, default=4, help="number of demonstrations (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {rank, score, id, instruction, input, output, metadata}; rank is 1-based")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata filter; repeat for several keys or values (quote values with |: 'task=write|poem'); "
                        "VALUE matches the string and, when it reads as a JSON number, true, false or null, that value too "
                        "(level=1 matches 1 and \"1\")")
    p.add_argument("--filter-json", default=None, metavar="JSON",
                   help="metadata filter as a JSON object, values of exact type: '{\"level\": [1, 2], \"task\": \"poem\"}'")
    p.add_argument("--min-score", type=float, default=None, help="drop hits with a cosine score below this")
    p.add_argument("--mmr", action="store_true",
                   help="diversify the hits with maximal marginal relevance, among the demonstrations of the query's task")
    p.add_argument("--mmr-lambda", type=float, default=None, metavar="L",
                   help="with --mmr: relevance/diversity trade-off in [0, 1], 1 = relevance only (default: 0.5)")
    p.add_argument("--content-weight", type=float, default=None, metavar="W",
                   help="mix content relevance into the ranking of the task candidates, in [0, 1] (default: the "
                        "index's own weight, 0 unless it was indexed with --content-weight)")
    p.add_argument("--content-query", default=None, metavar="TEXT",
                   help="with one QUERY: the text whose content should match (e.g. the query's input; default: the query)")
    p.add_argument("--batch-size", type=int, default=256, help="queries per encoder call with --queries (default: %(default)s)")
    _add_threads_argument(p)
    _add_trust_arguments(p)


def _typed(value: str) -> list[Any]:
    """A --filter VALUE as the values it matches: the string, plus its JSON scalar when it is one ("1" → 1)."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return [value]
    return [value, parsed] if parsed is None or isinstance(parsed, (bool, int, float)) else [value]


def parse_filters(items: Sequence[str], json_text: str | None = None) -> dict[str, list[Any]] | None:
    """``["task=a", "task=b", "level=1"]`` → ``{"task": ["a", "b"], "level": ["1", 1]}``, merged with the object of
    ``--filter-json`` (its values keep their JSON types); None when both are empty."""
    from pie_retriever.retrieval.filters import compile_filter

    filters: dict[str, list[Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"--filter expects KEY=VALUE, got {item!r} (quote values that hold | or spaces: --filter 'task=write|poem')."
            raise ConfigError(msg)
        filters.setdefault(key, []).extend(_typed(value))
    if json_text is not None:
        try:
            given = json.loads(json_text)
        except ValueError as exc:
            msg = f"--filter-json is not valid JSON ({exc}); expected an object such as '{{\"level\": [1, 2]}}'."
            raise ConfigError(msg) from None
        if not isinstance(given, dict) or not given:
            msg = f"--filter-json expects a non-empty JSON object {{key: value or [values]}}, got {json_text!r:.60}."
            raise ConfigError(msg)
        for key, value in given.items():
            filters.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    if filters:
        compile_filter(filters)  # a malformed filter fails before the model loads
    return filters or None


def hit_record(hit: Any) -> dict[str, Any]:
    """The command line's JSON shape of a hit: :meth:`Hit.to_dict` with a **1-based** ``rank``."""
    record = hit.to_dict()
    record["rank"] = hit.rank + 1
    return record


def read_queries(path: str) -> list[str]:
    """Queries from a file: ``.jsonl``/``.json`` pool files give their instructions; any other file (or ``-``,
    stdin) gives one query per non-empty line (split on ``\\n`` only; a UTF-8 BOM is dropped)."""
    return [r["query"] for r in read_query_records(path)]


def read_query_records(path: str) -> list[dict[str, Any]]:
    """:func:`read_queries` as records: ``{"query": ...}`` per line of a text file; for a pool file every field of
    the demonstration (``id``, ``instruction``, ``input``, ``metadata``...) plus ``query`` = its instruction, so the
    output of ``search --queries`` keeps what each input line had."""
    from pie_retriever.pool.pools import load_pool

    if path != "-" and Path(path).suffix.lower() in (".jsonl", ".json"):
        return [{**d.to_dict(), "query": d.instruction} for d in load_pool(path)]
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    text = _decode_utf8(data, "stdin" if path == "-" else path)
    # str.splitlines() would also split on form feed, NEL, U+2028...: a query may hold those
    queries = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not queries:
        msg = f"{path}: no queries (expected one per line, or a JSONL/JSON file of {{\"instruction\": ...}} records)."
        raise ConfigError(msg)
    return [{"query": q} for q in queries]


def _decode_utf8(data: bytes, where: str) -> str:
    """``data`` as UTF-8 without a leading BOM; a decoding error names the file, line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        msg = (f"{where}, line {line}, column {column}: not UTF-8 ({exc.reason}, byte {data[exc.start:exc.start + 1]!r}); "
               "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).")
        raise ConfigError(msg) from None


def _check_output_file(path: str) -> None:
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        msg = f"-o {path}: is a folder; give a file name such as picks.jsonl."
        raise ConfigError(msg)
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not _writable(parent):
        msg = f"-o {path}: cannot write under {parent}; choose a folder you can write to."
        raise ConfigError(msg)


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK | os.X_OK)


def _check_search_args(args: argparse.Namespace) -> None:
    if (args.query is None) == (args.queries is None):
        msg = "search takes either one QUERY or --queries FILE (not both, not neither)."
        raise ConfigError(msg)
    if args.output and args.queries is None:
        msg = "-o/--output is for --queries; for one query redirect stdout (search DIR QUERY --json > hits.json)."
        raise ConfigError(msg)
    if args.output:
        from pie_retriever._util import check_output_target

        _check_output_file(args.output)
        check_output_target(args.output, inputs=(args.index_dir, args.queries), force=args.force)
    if args.content_query is not None and args.queries is not None:
        msg = "--content-query goes with one QUERY; with --queries each query is its own content query."
        raise ConfigError(msg)


def _search_many(retriever: Any, queries: list[dict[str, Any]], args: argparse.Namespace, options: dict[str, Any]) -> int:
    from pie_retriever._threads import apply_threads
    from pie_retriever._util import atomic_write_text, check_int

    batch = check_int(args.batch_size, "--batch-size")
    if "torch" in sys.modules:  # a torch encoder (an ONNX one follows the same policy itself, without torch)
        apply_threads(args.threads, len(queries))
    elif args.threads is not None and hasattr(retriever.encoder, "threads"):
        retriever.encoder.threads = args.threads
    start = time.perf_counter()
    lines = []
    for i in range(0, len(queries), batch):
        chunk = queries[i:i + batch]
        for record, hits in zip(chunk, retriever.retrieve_batch([r["query"] for r in chunk], **options)):
            lines.append(json.dumps({**record, "hits": [hit_record(h) for h in hits]}, ensure_ascii=False) + "\n")
        if not args.output:
            sys.stdout.write("".join(lines))
            lines = []
    elapsed = time.perf_counter() - start
    if args.output:
        atomic_write_text(args.output, "".join(lines))
        print(f"Searched {len(queries)} queries in {elapsed:.2f}s ({len(queries) / max(elapsed, 1e-9):.0f}/s) → {args.output}",
              file=sys.stderr)
    return 0


def _print_hits(hits: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([hit_record(h) for h in hits], ensure_ascii=False, indent=2))
        return
    for h in hits:
        task = h.demonstration.metadata.get("task")
        label = f" [{task}]" if task else ""
        print(f"{h.rank + 1}. {h.score:.3f}{label} {h.demonstration.id}: {h.demonstration.instruction}")


def _mmr_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--mmr-lambda L`` (checked before the model loads) turns MMR on with that trade-off."""
    lam = getattr(args, "mmr_lambda", None)
    if lam is None:
        return {}
    if not 0.0 <= lam <= 1.0:
        msg = f"--mmr-lambda must be in [0, 1] (1 = relevance only), got {lam}."
        raise ConfigError(msg)
    return {"mmr": True, "mmr_lambda": lam}


def _check_filter_keys(index_dir: str, filters: dict[str, list[Any]] | None) -> None:
    """Unknown filter keys, found in the saved demonstrations before the model loads (the same error
    ``retrieve`` raises); stops reading as soon as every key is seen. An unreadable folder is left to the load."""
    from pie_retriever.errors import UnknownIdError
    from pie_retriever.retrieval.manifest import DEMOS_FILE

    if not filters:
        return
    wanted, known = set(filters), set()
    try:
        with open(Path(index_dir).expanduser() / DEMOS_FILE, encoding="utf-8") as fh:
            for line in fh:
                metadata = json.loads(line).get("metadata") if line.strip() else None
                known.update(metadata if isinstance(metadata, dict) else ())
                if wanted <= known:
                    return
    except (OSError, ValueError, AttributeError):
        return
    msg = f"Unknown metadata filter key(s) {sorted(wanted - known)}; keys present in the pool: {sorted(known) or 'none'}."
    raise UnknownIdError(msg)


def run_search(args: argparse.Namespace) -> int:
    from pie_retriever._threads import apply_threads
    from pie_retriever._util import check_k

    _check_search_args(args)
    check_k(args.k, "-k")  # before the model loads
    options = {"k": args.k, "filter": parse_filters(args.filter, args.filter_json), "min_score": args.min_score, "mmr": args.mmr,
               "content_weight": args.content_weight, **_mmr_options(args)}
    queries = read_query_records(args.queries) if args.queries is not None else None
    _check_filter_keys(args.index_dir, options["filter"])
    retriever = _load(args)
    if queries is not None:
        return _search_many(retriever, queries, args, options)
    if "torch" in sys.modules:  # a torch encoder; an ONNX one (encoders.runtime) takes one thread per query itself
        apply_threads(args.threads, 1)
    elif args.threads is not None and hasattr(retriever.encoder, "threads"):
        retriever.encoder.threads = args.threads
    _print_hits(retriever.retrieve(args.query, content_query=args.content_query, **options), args.json)
    return 0


# -- add -----------------------------------------------------------------------------------------------
def add_add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", metavar="INDEX", help="index folder written by `pie-retriever index` (updated atomically)")
    p.add_argument("pool", help="pool file of demonstrations to add (same formats as `index`)")
    p.add_argument("--label-field", default=None, help="copy this field to metadata.task")
    add_field_arguments(p)
    _add_threads_argument(p)
    _add_trust_arguments(p)


def run_add(args: argparse.Namespace) -> int:
    from pie_retriever._threads import apply_threads
    from pie_retriever.pool.pools import load_pool
    from pie_retriever.retrieval.persistence import check_save_target

    check_save_target(args.index_dir)
    demos = load_pool(args.pool, label_field=args.label_field, fields=field_map_from_args(args))
    retriever = _load(args)
    before = len(retriever)
    apply_threads(args.threads, len(demos))
    retriever.add(demos, show_progress=True)
    path = retriever.save(args.index_dir)
    added = len(retriever) - before
    skipped = len(demos) - added
    note = f" ({skipped} already indexed, skipped by --dedupe)" if skipped else ""
    print(f"Added {added} demonstrations from {args.pool}{note}; {len(retriever)} in all → {path}", file=sys.stderr)
    return 0


# -- delete --------------------------------------------------------------------------------------------
def add_delete_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", metavar="INDEX", help="index folder written by `pie-retriever index` (updated atomically)")
    p.add_argument("ids", nargs="+", metavar="ID", help="ids of the demonstrations to delete (unknown ids: error, nothing deleted)")
    _add_trust_arguments(p)


def run_delete(args: argparse.Namespace) -> int:

    # Deleting embeds nothing: a stand-in with the saved encoder's config and fingerprint avoids loading the model.
    retriever = _load(args, encoder=_saved_encoder(args.index_dir))
    removed = retriever.delete(list(dict.fromkeys(args.ids)))
    path = retriever.save(args.index_dir)
    print(f"Deleted {removed} demonstrations; {len(retriever)} left → {path}", file=sys.stderr)
    return 0


def saved_encoder(index_dir: str | Path) -> Any:
    """A stand-in encoder for ``PIERetriever.load(index_dir, encoder=...)`` when nothing will be embedded (delete,
    the downstream tools on stored vectors): the saved config, fingerprint and dim, no model loaded. None when the
    folder has no manifest (the load then says what is missing)."""
    return _saved_encoder(str(index_dir))


def _saved_encoder(index_dir: str) -> Any:
    """An encoder that only carries the saved config, fingerprint and dim of an index (it cannot encode)."""
    from pie_retriever.encoders.base import Encoder
    from pie_retriever.errors import IndexLoadError
    from pie_retriever.retrieval.manifest import MANIFEST

    path = Path(index_dir).expanduser() / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        saved = dict(manifest["encoder"])
        fingerprint, dim = saved.pop("fingerprint"), int(manifest["dim"])
    except FileNotFoundError:
        return None  # PIERetriever.load says what is missing
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"{path}: not a readable index manifest ({exc}); rebuild the index with `pie-retriever index`."
        raise IndexLoadError(msg) from exc

    class _Saved(Encoder):
        prompt = saved.get("prompt", "")
        query_prompt = saved.get("query_prompt", prompt)

        @property
        def dim(self) -> int:
            return dim

        @property
        def fingerprint(self) -> str:
            return fingerprint

        def encode(self, texts: Any, *, prompt: str | None = None, show_progress: bool | None = None) -> Any:
            msg = "This index was opened without its model (for delete); it cannot embed."
            raise RuntimeError(msg)

        def config(self) -> dict[str, Any]:
            return dict(saved)

    return _Saved()
