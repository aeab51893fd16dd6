"""Per-job experiment trackers: TRL's `report_to` gets the requested trackers that are installed on the worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.schemas.spec import TrainingSpec
from tests.worker.training.helpers import SpecFactory
from worker.training import config


def test_requested_trackers_pass_through_when_installed(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec(training={"report_to": ["tensorboard", "wandb", "mlflow"]})
    args = config.sft_config(spec, output_dir=tmp_path, device="cpu", quantized=False, has_eval=False)
    installed = [t for t in ("tensorboard", "wandb", "mlflow") if importlib.util.find_spec(t) is not None]
    # A tracker the worker lacks is skipped rather than failing the job at start.
    assert list(args.report_to) == installed  # TRL reads "none" as []


def test_no_trackers_by_default_and_unknown_ones_are_refused(make_spec: SpecFactory, tmp_path: Path) -> None:
    args = config.sft_config(make_spec(), output_dir=tmp_path, device="cpu", quantized=False, has_eval=False)
    assert list(args.report_to) == []
    with pytest.raises(ValidationError, match="report_to"):
        TrainingSpec(report_to=["comet_ml"])  # type: ignore[list-item]
