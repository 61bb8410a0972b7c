"""``pie-retriever serve INDEX_DIR... [--host 127.0.0.1] [--port 8080]``: run the selection service with uvicorn."""

from __future__ import annotations

import argparse
import logging

from pie_retriever.service.config import BATCH_MAX_QUERIES, BATCH_WINDOW_S, DEFAULT_MAX_BODY, DEFAULT_QUEUE

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("indexes", nargs="+", metavar="INDEX_DIR", help="saved index folders, served by folder name or as NAME=DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; another address needs keys)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--keys-file", default=None, help="file of SCOPE:KEY lines (scopes read, write); also $PIE_SERVE_KEYS")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="largest request body in bytes (default 1 MiB)")
    p.add_argument("--queue", type=int, default=DEFAULT_QUEUE, help="queries that may wait for search before 503 (default 256)")
    p.add_argument("--batch-window-ms", type=float, default=BATCH_WINDOW_S * 1000, help="micro-batch window (default 2 ms)")
    p.add_argument("--batch-max", type=int, default=BATCH_MAX_QUERIES, help="queries per micro-batch (default 64)")
    p.add_argument("--cors-origin", action="append", default=[], help="allow browser calls from this origin (repeatable; off by default)")
    p.add_argument("--tokenizer", default=None, help="tokenizer (model alias or folder) to count token_budget of fewshot requests")
    p.add_argument("--read-only", action="store_true", help="a read replica: refuse writes, never write the index folder")


def run(args: argparse.Namespace) -> int:
    from pie_retriever.errors import require
    from pie_retriever.service.app import create_app
    from pie_retriever.service.config import ServiceConfig, check_bind, parse_index_specs
    from pie_retriever.service.keys import load_keys

    uvicorn = require("uvicorn", "serve", "pie-retriever serve")
    keys = load_keys(args.keys_file)
    check_bind(args.host, bool(keys))
    config = ServiceConfig(parse_index_specs(args.indexes), host=args.host, port=args.port, keys_file=args.keys_file,
                           max_body=args.max_body, queue_size=args.queue, batch_window=args.batch_window_ms / 1000,
                           batch_max=args.batch_max, cors_origins=list(args.cors_origin), tokenizer=args.tokenizer,
                           read_only=args.read_only)
    app = create_app(config, keys)
    logger.info("Serving %s on %s:%d (%s)", sorted(config.indexes), args.host, args.port, "keys on" if keys else "no keys")
    # keep-alive longer than the time a request may wait under load (and than a load balancer's idle timeout):
    # with uvicorn's 5 s a pooled client connection idle behind a long queue could be closed as it was reused
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, timeout_graceful_shutdown=30,
                timeout_keep_alive=75)
    return 0
