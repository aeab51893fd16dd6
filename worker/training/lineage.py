"""Continued training: the parent's adapter (a fine-tune's or a checkpoint's) loaded onto the base, trainable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import PeftModel

from core.schemas.spec import JobSpec
from worker.training.errors import TrainingError
from worker.training.interfaces import Reporter


def continue_adapter(model: Any, adapter_dir: Path, reporter: Reporter) -> PeftModel:
    """`model` wrapped in the adapter stored in `adapter_dir` (adapter_config.json + weights), ready to train on."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise TrainingError("invalid_model", "The parent model's archive holds no adapter (adapter_config.json).")
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    reporter.event("Continuing the parent model's adapter", {"adapter": adapter_dir.name})
    return peft_model


def lineage_manifest(spec: JobSpec, base_model_name: str) -> dict[str, Any]:
    """What tunepool.json records of the adapter's ancestry: the parent and the chain back to the base."""
    return {
        "parent_model": spec.parent.model if spec.parent else None,
        "lineage": spec.parent.chain if spec.parent else [base_model_name],
    }
