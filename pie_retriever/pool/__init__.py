"""The pool stage: demonstration pool files (``pools``: JSONL, JSON list, Alpaca, IEB), the one IEB reader (``ieb``)
and the bundled demo pool (``data/``)."""
