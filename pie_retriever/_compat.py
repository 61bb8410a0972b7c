"""Old import paths of modules that moved into the stage folders keep working, with a ``DeprecationWarning``.

Until 0.2 the package root held 28 modules side by side (``pie_retriever.retriever``, ``pie_retriever.pools``, …).
They now live in the stage folders (docs/architecture.md). ``import pie_retriever.retriever`` (and every
``from pie_retriever.retriever import X``) still works: a meta-path finder maps the old name to the new module and
registers the *same* module object under both names, so patching, ``isinstance`` and pickles see one module.
Prefixes map whole packages: ``pie_retriever.bench.icl`` is ``pie_retriever.evaluation.bench.icl``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module name → new module name (a package maps its submodules too).
MOVED: dict[str, str] = {
    "pie_retriever.artifact": "pie_retriever.encoders.artifact",
    "pie_retriever.models": "pie_retriever.encoders.models",
    "pie_retriever.prompts": "pie_retriever.encoders.prompts",
    "pie_retriever.export": "pie_retriever.encoders.export",
    "pie_retriever.export_card": "pie_retriever.encoders.export_card",
    "pie_retriever.onnx_export": "pie_retriever.encoders.onnx_export",
    "pie_retriever.server_client": "pie_retriever.encoders.http",
    "pie_retriever.split_zip": "pie_retriever.encoders.weights.split_zip",
    "pie_retriever.llm": "pie_retriever.encoders.weights",
    "pie_retriever.pools": "pie_retriever.pool.pools",
    "pie_retriever.datasets": "pie_retriever.pool",
    "pie_retriever.retriever": "pie_retriever.retrieval.retriever",
    "pie_retriever.content": "pie_retriever.retrieval.content",
    "pie_retriever.filters": "pie_retriever.retrieval.filters",
    "pie_retriever.bm25": "pie_retriever.retrieval.bm25",
    "pie_retriever.persistence": "pie_retriever.retrieval.persistence",
    "pie_retriever.manifest": "pie_retriever.retrieval.manifest",
    "pie_retriever.distributed": "pie_retriever.retrieval.distributed",
    "pie_retriever.pool_cli": "pie_retriever.retrieval.cli",
    "pie_retriever.fewshot": "pie_retriever.prompting.fewshot",
    "pie_retriever.prompt_builder": "pie_retriever.prompting.builder",
    "pie_retriever.bench": "pie_retriever.evaluation.bench",
    # the downstream subcommands (one module each, plus the shared _cli) merged into downstream.cli
    "pie_retriever.downstream._cli": "pie_retriever.downstream.cli",
    "pie_retriever.downstream.cli_select": "pie_retriever.downstream.cli",
    "pie_retriever.downstream.cli_compress": "pie_retriever.downstream.cli",
    "pie_retriever.downstream.cli_compare": "pie_retriever.downstream.cli",
    "pie_retriever.downstream.cli_map": "pie_retriever.downstream.cli",
    "pie_retriever.downstream.cli_tasks": "pie_retriever.downstream.cli",
}


def new_name(old: str) -> str | None:
    """The module an old dotted name now lives at, or None when it did not move."""
    head = old
    while head:
        if head in MOVED:
            return MOVED[head] + old[len(head):]
        head = head.rpartition(".")[0]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new
        self._spec: Any = None

    def create_module(self, spec: Any) -> ModuleType:
        warnings.warn(f"{self.old} moved to {self.new}; import it from there (the old path will be removed in 0.3).",
                      DeprecationWarning, stacklevel=2)  # warnings skips the import system's frames
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system stamped the alias spec on the real module: undo it


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith("pie_retriever."):
            return None
        new = new_name(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _AliasLoader(fullname, new))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
