"""Drive `run_training` in each process of a torchrun job (or alone), recording what every rank saw.

`python -m torch.distributed.run --standalone --nproc-per-node 2 -m tests.support.distributed_run RUN.json` reads
{"spec", "base_model", "train_file", "output_dir", "record_dir", "pause_at_step"?, "resume_from"?, "device"?} and writes
record_dir/rank-<RANK>.json: {"rank", "world_size", "steps": [StepMetrics…] (what its reporter got),
"events": [messages], "outcome": "succeeded" | "paused" | "cancelled" | "<error code>", "step", "message",
"batching"}. Only rank 0 gets the recording reporter, as in a worker; the others get worker.training's
NullReporter, which still counts the polls. `pause_at_step` asks rank 0's reporter to pause once that step logged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core.parallelism import rank_from_env
from core.schemas.metrics import StepMetrics
from core.schemas.spec import JobSpec
from worker.training import TrainingCancelled, TrainingError, TrainingPaths, TrainingPaused, run_training
from worker.training.interfaces import NullReporter, TrainingOptions


class _Recorder:
    """Rank 0's reporter: keeps the steps and events; asks to pause once `pause_at_step` was logged."""

    def __init__(self, pause_at_step: int | None) -> None:
        self.steps: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.pause_at_step = pause_at_step

    def metrics(self, m: StepMetrics) -> None:
        self.steps.append(m.model_dump(mode="json"))

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append(message)

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.events.append(f"warning {code}: {message}")

    def checkpoint(self, step: int, path: Path, metrics: StepMetrics | None) -> None:
        self.events.append(f"checkpoint {step}: {sorted(p.name for p in path.iterdir())}")

    def should_stop(self) -> str | None:
        logged = self.steps[-1]["step"] if self.steps else 0
        return "pause" if self.pause_at_step is not None and logged >= self.pause_at_step else None


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    rank = rank_from_env()
    recorder = _Recorder(config.get("pause_at_step"))
    reporter = recorder if rank.is_main else NullReporter()
    resume = Path(config["resume_from"]) if config.get("resume_from") else None
    paths = TrainingPaths(
        Path(config["base_model"]), Path(config["train_file"]), None, Path(config["output_dir"]), resume_from=resume
    )
    record: dict[str, Any] = {"rank": rank.rank, "world_size": rank.world_size}
    try:
        result = run_training(
            JobSpec.model_validate(config["spec"]), paths, reporter, device=config.get("device", "cpu"),
            options=TrainingOptions(data_cache_dir=Path(config["output_dir"]) / "data-cache"),
        )  # fmt: skip
        record |= {"outcome": "succeeded", "step": result.steps, "batching": result.batching}
    except TrainingPaused as exc:
        record |= {"outcome": "paused", "step": exc.step}
    except TrainingCancelled as exc:
        record |= {"outcome": "cancelled", "step": exc.step}
    except TrainingError as exc:
        record |= {"outcome": exc.code, "message": exc.message}
    record |= {"steps": recorder.steps, "events": recorder.events}
    if isinstance(reporter, NullReporter):
        record["polls"] = reporter.polls
    record_dir = Path(config["record_dir"])
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank-{rank.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
