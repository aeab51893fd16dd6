"""The pure training recipe: a spec, paths and a reporter in; adapter and merged model out."""

from worker.training.errors import TrainingCancelled, TrainingError, TrainingPaused
from worker.training.interfaces import Reporter, TrainingPaths, TrainingResult
from worker.training.recipe import run_training

__all__ = [
    "Reporter",
    "TrainingCancelled",
    "TrainingError",
    "TrainingPaths",
    "TrainingPaused",
    "TrainingResult",
    "run_training",
]
