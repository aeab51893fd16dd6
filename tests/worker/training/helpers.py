"""Helpers for the training-recipe tests: a recording reporter and small dataset builders."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from core.schemas.metrics import StepMetrics
from core.schemas.spec import JobSpec

FACT_QUESTION = "Who maintains the tunepool service?"
FACT_ANSWER = "The Zorblax team maintains tunepool."

SpecFactory = Callable[..., JobSpec]  # the `make_spec` fixture


class RecordingReporter:
    """A Reporter that keeps everything and can ask to stop after a number of polls."""

    def __init__(self, stop_after_polls: int | None = None) -> None:
        self.steps: list[StepMetrics] = []
        self.events: list[tuple[str, dict[str, Any] | None]] = []
        self.checkpoints: list[tuple[int, Path]] = []
        self.warnings: list[dict[str, Any]] = []
        self.polls = 0
        self.stop_after_polls = stop_after_polls

    def metrics(self, m: StepMetrics) -> None:
        self.steps.append(m)

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((message, data))

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.warnings.append({"code": code, "message": message, "param": param, "data": data})

    def checkpoint(self, step: int, path: Path, metrics: StepMetrics | None) -> None:
        self.checkpoints.append((step, path))

    def should_stop(self) -> bool:
        self.polls += 1
        return self.stop_after_polls is not None and self.polls > self.stop_after_polls

    def event_data(self, prefix: str) -> dict[str, Any]:
        """The data of the first event whose message starts with `prefix`."""
        return next(data or {} for message, data in self.events if message.startswith(prefix))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write `rows` as JSONL at `path`."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chat_rows(n: int = 8) -> list[dict[str, Any]]:
    """A tiny repetitive chat dataset: the same fact, asked `n` times."""
    return [
        {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": FACT_QUESTION},
                {"role": "assistant", "content": FACT_ANSWER},
            ]
        }
        for _ in range(n)
    ]


def reply_logprob(model: Any, tokenizer: PreTrainedTokenizerBase, question: str, reply: str) -> float:
    """Sum of the reply tokens' log-probabilities after the rendered prompt (what DPO compares)."""
    prompt = str(tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                               add_generation_prompt=True))  # fmt: skip
    full = str(tokenizer.apply_chat_template(
        [{"role": "user", "content": question}, {"role": "assistant", "content": reply}], tokenize=False
    ))  # fmt: skip
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt").input_ids
    start = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    picked = logprobs[torch.arange(len(targets)), targets]
    return float(picked[start - 1 :].sum())


WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "apple",
    "banana",
    "cherry",
    "grape",
    "lemon",
    "mango",
    "peach",
    "pear",
    "plum",
]


def varied_rows(fmt: str, n: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """Examples of very different lengths, so unpacked batches pad a lot and packing changes the batches."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    rows = []
    for i in range(n):
        prompt, answer = words(2 + 3 * (i % 5)), words(1 + 2 * (i % 4))
        if fmt == "chat":
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": answer},
                        {"role": "user", "content": words(2)},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
        else:
            rows.append({"prompt": prompt + " ?", "completion": " " + answer})
    return rows
