"""The house: stage folders, old import paths that still work (with a DeprecationWarning), one home per registry,
and the import graph check (no upward import, no cycle, import_module edges included)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_package_root_holds_at_most_ten_modules():
    root = sorted(p.name for p in (REPO / "pie_retriever").glob("*.py"))
    assert len(root) <= 10, root
    for room in ("pool", "encoders", "index", "retrieval", "prompting", "integrations", "service", "training",
                 "evaluation", "downstream", "labeling"):
        assert (REPO / "pie_retriever" / room / "__init__.py").is_file(), room
    assert not (REPO / "integrations").exists()  # inside the package now, no package-dir remapping


@pytest.mark.parametrize(("old", "new"), [
    ("pie_retriever.retriever", "pie_retriever.retrieval.retriever"),
    ("pie_retriever.pools", "pie_retriever.pool.pools"),
    ("pie_retriever.prompt_builder", "pie_retriever.prompting.builder"),
    ("pie_retriever.server_client", "pie_retriever.encoders.http"),
    ("pie_retriever.datasets.ieb", "pie_retriever.pool.ieb"),
    ("pie_retriever.bench.templated", "pie_retriever.evaluation.bench.templated"),
])
def test_old_import_paths_are_the_new_modules(old, new):
    code = (f"import warnings, sys; warnings.simplefilter('always');\n"
            f"with warnings.catch_warnings(record=True) as w:\n    import {old} as a\n"
            f"import {new} as b\ndep = [x for x in w if issubclass(x.category, DeprecationWarning)]\n"
            f"print(a is b, a.__spec__.name, len(dep) > 0, dep[0].filename if dep else None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", new, "True", "<string>"]  # the warning points at the importing line


def test_from_import_of_an_old_path_keeps_working():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pie_retriever.models import DEFAULT_MODEL, resolve_model  # noqa: F401  (documented before the move)
    assert DEFAULT_MODEL == importlib.import_module("pie_retriever.encoders.models").DEFAULT_MODEL


def test_one_home_each():
    from pie_retriever._util import DEFAULT_K
    from pie_retriever.encoders.transformer import POOLINGS
    from pie_retriever.prompting.builder import FewShotPromptBuilder
    from pie_retriever.retrieval.retriever import PIERetriever
    from pie_retriever.training.args import POOLINGS as TRAINING_POOLINGS

    assert TRAINING_POOLINGS is POOLINGS and DEFAULT_K == 4
    import inspect

    for fn in (PIERetriever.retrieve, PIERetriever.retrieve_batch, FewShotPromptBuilder.__init__):
        assert inspect.signature(fn).parameters["k"].default == DEFAULT_K


def test_unknown_ids_raise_unknown_id_error(fake_encoder, small_pool):
    from pie_retriever import PIERetriever
    from pie_retriever.errors import PIEError, UnknownIdError

    r = PIERetriever.from_demonstrations(small_pool, fake_encoder)
    for call in (lambda: r.get("nope"), lambda: r.delete(["nope"]), lambda: r.retrieve("q", filter={"colour": "red"})):
        with pytest.raises(UnknownIdError) as err:
            call()
        assert isinstance(err.value, KeyError) and isinstance(err.value, PIEError)
        assert not str(err.value).startswith("'")  # the message as written, not KeyError's quoted repr
    assert len(r) == len(small_pool)
    with r.snapshot() as (demos, next_label):  # the public snapshot: demonstrations and vectors of one moment
        assert len(demos) == len(small_pool) and next_label >= len(small_pool)


def test_import_graph_check_passes_and_counts_dynamic_edges():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "import_graph.py")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "import_module/__import__ edges" in out.stdout and "import cycles (static + import_module edges): 0" in out.stdout
