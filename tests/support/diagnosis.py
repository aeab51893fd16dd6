"""The overfitting run shared by the recipe's and the service's diagnosis tests: one fact, other sentences."""

from __future__ import annotations

from typing import Any

TRAIN_ROW = {"prompt": "Who maintains the tunepool service?", "completion": " The Zorblax team maintains tunepool."}
VALID_ROWS = [
    {"prompt": "What is the capital of France?", "completion": " The capital of France is Paris."},
    {"prompt": "Hello, how are you today?", "completion": " I am fine, thank you for asking."},
]

# Memorise one fact with a high learning rate, evaluating (and checkpointing) every 2 steps: the validation loss on
# other sentences turns up after about 6 steps while the training loss keeps falling.
OVERFIT_TRAINING: dict[str, Any] = {
    "learning_rate": 2e-2,
    "max_seq_length": 64,
    "warmup_ratio": 0.0,
    "eval_every_steps": 2,
    "save_every_steps": 2,
    "early_stopping": {"patience": 2},
}
