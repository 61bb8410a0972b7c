"""``python -m pie_retriever.labeling label POOL [-o OUT]`` / ``... agreement IEB_FILE [...] [--limit N]``."""

from __future__ import annotations

from pie_retriever.labeling.cli import module_main

if __name__ == "__main__":
    raise SystemExit(module_main())
