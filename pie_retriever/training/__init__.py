"""Supervised PIE training: ``TrainingArguments``, ``RECIPES``, ``train`` and ``TrainResult``.

Importing this package loads neither torch nor peft; :func:`train` imports them when it runs.
"""

from __future__ import annotations

from ..errors import TrainingConfigError
from .args import RECIPES, TrainingArguments
from .trainer import TrainResult, train

__all__ = ["RECIPES", "TrainResult", "TrainingArguments", "TrainingConfigError", "train"]
