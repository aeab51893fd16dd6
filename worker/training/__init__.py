"""The pure training recipe: a spec, paths and a reporter in; adapter and merged model out."""

from worker.training.recipe import (
    Reporter,
    TrainingCancelled,
    TrainingError,
    TrainingPaths,
    TrainingPaused,
    TrainingResult,
    run_training,
)

__all__ = [
    "Reporter",
    "TrainingCancelled",
    "TrainingError",
    "TrainingPaths",
    "TrainingPaused",
    "TrainingResult",
    "run_training",
]
