"""Downstream uses of instruction embeddings (the seed paper's other applications).

* :func:`select_subset` — a task-diverse subset of an instruction-tuning pool (``pie-retriever select``);
* :func:`compress_indices` — a small evaluation set that keeps the task distribution (``pie-retriever compress``);
* :func:`compare_sets` — dataset task correlation: coverage and Wasserstein matrices (``pie-retriever compare``);
* :func:`make_panel` / :func:`plot_maps` — a 2-D task map (``pie-retriever map``);
* :func:`discover_tasks` — clusters of an unlabelled pool named by ``verb|noun`` (``pie-retriever tasks``).

Start from :func:`load_items` (pool file, index folder or list → demonstrations + vectors). Names are loaded
lazily: importing this package loads neither torch, faiss nor matplotlib. The five subcommands live in
:mod:`pie_retriever.downstream.cli` (``add_<name>_arguments`` / ``run_<name>``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Items": "embed", "load_items": "embed", "make_encoder": "embed", "task_labels": "embed", "silver_labels": "embed",
    "SELECT_METHODS": "select", "select_subset": "select", "selection_report": "select",
    "task_coverage": "coverage",
    "COMPRESS_METHODS": "compress", "Compressed": "compress", "compress_indices": "compress", "weighted_mean": "compress",
    "label_distance": "compress",
    "compare_sets": "compare", "plot_comparison": "compare",
    "MapPanel": "taskmap", "make_panel": "taskmap", "plot_maps": "taskmap", "project_2d": "taskmap", "write_html": "taskmap",
    "discover_tasks": "tasks", "format_table": "tasks",
    "name_clusters": "naming",
    "kmeans": "clustering", "kcenter": "clustering",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
