"""Fixtures for the training recipe: the tiny model, a chat file, and a spec factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.fixtures.tiny_model import TOOLS_CHAT_TEMPLATE, build_tiny_llama, with_chat_template
from tests.worker.training.helpers import SpecFactory, chat_rows, write_jsonl


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.getbasetemp() / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_tools_model(tiny_model: Path) -> Path:
    """The tiny model with a chat template that renders tools, tool calls and tool results."""
    return with_chat_template(tiny_model, tiny_model.with_name("tiny-llama-tools"), TOOLS_CHAT_TEMPLATE)


@pytest.fixture
def chat_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", chat_rows())


@pytest.fixture
def make_spec() -> SpecFactory:
    """JobSpec with small, fast defaults; keyword sections (lora=, training=, ...) are merged over them."""

    def make(*, epochs: int = 3, batch_size: int = 4, **sections: Any) -> JobSpec:
        base: dict[str, Any] = {
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "quantization": {"mode": "none"},
            "training": {"learning_rate": 1e-2, "max_seq_length": 64, "warmup_ratio": 0.0},
            "artifacts": ["adapter"],
        }
        for key, value in sections.items():
            base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
        hyper = ResolvedHyperparameters(n_epochs=epochs, batch_size=batch_size, learning_rate_multiplier=1.0)
        return JobSpec(hyperparameters=hyper, **base)

    return make
