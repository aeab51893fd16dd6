"""Pre-flight advice that needs the tokenised data (the spec-only rules are core/advice.py, run by the API).

Truncation by max_seq_length, examples left with no trainable token, validation examples that are also training
examples (a validation loss that cannot show overfitting). Reported as warnings through the reporter.
"""

from __future__ import annotations

from worker.training.data import TokenizedData
from worker.training.interfaces import Reporter
from worker.training.throughput import PreparedData


def overlapping(train: TokenizedData, valid: TokenizedData) -> int:
    """Validation examples whose tokens equal a training example's."""
    seen = {hash(tuple(ids)) for ids in train.dataset["input_ids"]}
    return sum(hash(tuple(ids)) in seen for ids in valid.dataset["input_ids"])


def report_data_warnings(prepared: PreparedData, max_seq_length: int, reporter: Reporter) -> None:
    """Warn about truncated and untrainable examples and a validation set that overlaps the training set."""
    for name, data in (("training", prepared.train), ("validation", prepared.valid)):
        if data is None:
            continue
        if data.truncated:
            reporter.warning(
                f"{name}_truncated",
                f"{data.truncated} {name} examples are longer than training.max_seq_length={max_seq_length} "
                f"(the longest has {data.longest} tokens) and were cut: their ends are never learnt. Raise "
                "max_seq_length or shorten the examples.",
                "training.max_seq_length",
                {"examples": data.truncated, "longest": data.longest},
            )
        if data.dropped:
            reporter.warning(
                f"{name}_untrainable",
                f"{data.dropped} {name} examples keep no trainable token after truncation to {max_seq_length} "
                "tokens (the prompt fills the window) and were skipped. Raise max_seq_length or shorten the prompts.",
                "training.max_seq_length",
                {"examples": data.dropped},
            )
    if prepared.valid is not None and (shared := overlapping(prepared.train, prepared.valid)):
        reporter.warning(
            "validation_overlaps_training",
            f"{shared} of {len(prepared.valid.dataset)} validation examples are also training examples: their "
            "loss falls as the adapter memorises them, hiding overfitting. Use held-out examples only.",
            "validation_file",
            {"examples": shared},
        )
