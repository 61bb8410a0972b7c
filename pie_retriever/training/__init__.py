"""Supervised PIE training: ``TrainingArguments``, ``RECIPES``, ``train`` and ``TrainResult``.

Importing this package loads neither torch nor peft; :func:`train` imports them when it runs.
"""

from __future__ import annotations

from pie_retriever.errors import TrainingConfigError
from pie_retriever.training.args import RECIPES, TrainingArguments
from pie_retriever.training.trainer import TrainResult, train

__all__ = ["RECIPES", "TrainResult", "TrainingArguments", "TrainingConfigError", "train"]
