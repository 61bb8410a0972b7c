"""IEB-style ``verb|noun`` task labels for instructions.

The Instruction Embedding Benchmark (IEB, Li et al. 2024) names the task of an instruction by its main
verb and the head noun of that verb's object, lemmatised and lowercased: ``"Outline the steps to make an
apple pie."`` is ``outline|step``, ``"Write a poem about the sea"`` is ``write|poem``. Factual questions get
``why|knowledge``, ``how|knowledge``, ``what|knowledge``, ... This package reproduces that scheme with a
dependency parse (spaCy's small English pipeline, installed from PyPI, no download at run time) plus rules
learnt from IEB's conventions (:mod:`.rules`).

Public API (:mod:`.api`, :mod:`.cli`)::

    label_instruction(text) -> str                      # "verb|noun"
    label_instructions(texts, batch_size=64, show_progress=None) -> list[str]
    parse_label(label) -> list[(verb, noun)]            # IEB's "a|b##c|d" labels
    label_agreement(path) -> dict                       # exact agreement with gold on an IEB file
    label_demonstrations(demos, field="instruction", overwrite=False) -> (demos, counts)  # fill missing labels
    main(pool_path, output=None, field="instruction", overwrite=False) -> int   # label a pool file

When no verb can be found the label is :data:`FALLBACK_LABEL` (``"none|none"``); when a verb is found but
no object noun, the noun is ``"none"`` (IEB itself has labels such as ``translate|none``). Both are best
treated as "unlabelled" when building training pairs.

Command line (:mod:`.cli`): ``pie-retriever label POOL [-o OUT]`` and ``pie-retriever label agreement IEB_FILE
[IEB_FILE ...] [--limit N]``; ``python -m pie_retriever.labeling`` is the same command line.

Importing this package does not import spaCy; it is loaded on first use. Install it with
``pip install "pie-retriever[train]"``.
"""

from __future__ import annotations

from pie_retriever.labeling import api
from pie_retriever.labeling.api import *  # noqa: F403  (the public names are api.__all__)
from pie_retriever.labeling.cli import main

__all__ = [*api.__all__, "main"]
