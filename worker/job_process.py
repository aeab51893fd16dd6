"""Child process that trains one job: `python -m worker.job_process JOB_ID WORKDIR [ATTEMPT]`.

It writes WORKDIR/result.json; the parent (worker.runner) records the outcome from it.

Started by torchrun for a multi-GPU job (one process per GPU, RANK/WORLD_SIZE in the environment), rank 0 alone
writes to the database (metrics, events, checkpoints, dropped steps) and result.json; every rank fetches its own
copy of the inputs (WORKDIR/rank-N/ beside rank 0's WORKDIR), so no two processes write one file.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from core.enums import ArtifactKind, ErrorSide
from core.parallelism import Rank, rank_from_env
from core.registry import load_registry
from core.schemas.spec import JobSpec
from core.settings import get_settings
from core.storage import ObjectStore, StorageError, configured_store
from db.models import Artifact, DatasetFile, TrainingJob
from db.repositories import artifacts, files, jobs, metrics
from db.session import unit_of_work
from worker.archive import fetch, fetch_dir, publish_dir
from worker.dbretry import OUTAGE_PATIENCE_SECONDS, retry_db
from worker.outcome import JobOutcome, PublishedArtifact
from worker.reporter import STOP_FILE, DatabaseReporter
from worker.training.errors import TrainingCancelled, TrainingError, TrainingPaused
from worker.training.interfaces import NullReporter, TrainingOptions, TrainingPaths

log = logging.getLogger("worker.job_process")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main(job_id: str, workdir: Path, attempt: int | None = None) -> JobOutcome:
    """Train the job; with `attempt` (the parent's claim) every write is refused once another claim took over."""
    from worker.training.recipe import run_training  # the training stack loads in this child only

    settings = get_settings()
    store = configured_store(settings)
    job, train, valid, checkpoints = retry_db(lambda: _load(job_id), f"read job {job_id}")
    spec = JobSpec.model_validate(job.spec)
    model_name, team_id = job.model, job.team_id
    attempt = job.attempts if attempt is None else attempt
    rank = rank_from_env()
    # Rank 0 writes to the database and hears stop requests; the callbacks pass them on to the other ranks.
    reporter: DatabaseReporter | NullReporter = (
        DatabaseReporter(
            job_id, team_id, store, settings.checkpoints_keep, attempt=attempt, stop_file=workdir / STOP_FILE
        )
        if rank.is_main
        else NullReporter()
    )
    inputs = _inputs_dir(workdir, rank)
    try:
        model = load_registry(settings.resolved_model_registry).get(model_name)
        if model is None:
            return JobOutcome.failed(
                "model_not_found", f"model {model_name!r} is no longer in the registry", ErrorSide.USER, "model"
            )
        assert train is not None
        parent = retry_db(lambda: _parent_archive(spec), f"read the parent of job {job_id}") if spec.parent else None
        if spec.parent and parent is None:
            return JobOutcome.failed(
                "parent_not_found", f"the archive of {spec.parent.model} is gone", ErrorSide.USER, "model"
            )
        paths = TrainingPaths(
            base_model=Path(model.source),
            train_file=fetch(store, train.storage_key, inputs / "train.jsonl"),
            valid_file=fetch(store, valid.storage_key, inputs / "valid.jsonl") if valid else None,
            output_dir=workdir / "out",  # shared: the Trainer writes each rank's part of a checkpoint there
            resume_from=_resume_point(store, checkpoints[-1], inputs, reporter) if checkpoints else None,
            init_adapter=fetch_dir(store, parent.storage_key, inputs / "parent") if parent else None,
        )
        if not checkpoints and rank.is_main:  # lost before its first checkpoint: every step trains again
            _forget_steps_after(job_id, 0)
        try:
            options = TrainingOptions.from_settings(settings)
            result = run_training(spec, paths, reporter, device=settings.device, options=options)
        except TrainingCancelled:
            return JobOutcome(status="cancelled")
        except TrainingPaused as exc:
            return JobOutcome(status="paused", step=exc.step)
        except TrainingError as exc:
            return training_failure(exc)
        if not rank.is_main:  # rank 0 publishes the adapter every rank trained
            return JobOutcome(status="succeeded", trained_tokens=result.trained_tokens)
        reporter.event("Publishing artifacts")
        final = result.final_metrics.model_dump(exclude_none=True) if result.final_metrics else {}
        published: list[PublishedArtifact] = []
        try:
            # Always stored: the adapter is the final checkpoint even when only `merged` was asked for.
            adapter = publish_dir(store, result.adapter_dir, f"artifacts/{team_id}/{job_id}/adapter.tar", "adapter.tar")
            if "adapter" in spec.artifacts:
                published.append(PublishedArtifact(**adapter, kind=ArtifactKind.ADAPTER, metrics=final))
            step = result.published_step or result.steps  # with early stopping: the best step's adapter
            published.append(PublishedArtifact(**adapter, kind=ArtifactKind.CHECKPOINT, step=step, metrics=final))
            if result.merged_dir is not None:
                merged = publish_dir(store, result.merged_dir, f"artifacts/{team_id}/{job_id}/merged.tar", "merged.tar")
                published.append(PublishedArtifact(**merged, kind=ArtifactKind.MERGED, metrics=final))
        except (OSError, StorageError) as exc:
            for a in published:
                store.delete(a.storage_key)
            return JobOutcome.failed("storage_error", f"could not publish artifacts: {exc}", ErrorSide.SYSTEM)
        return JobOutcome(
            status="succeeded", artifacts=published, trained_tokens=result.trained_tokens, report=result.report
        )
    finally:
        # Steps logged while the database was unreachable wait in memory: write them before the parent records the
        # outcome (after which this claim's writes are refused) and before this process exits with them.
        if isinstance(reporter, DatabaseReporter) and not reporter.flush(OUTAGE_PATIENCE_SECONDS):
            log.error("job %s: the database stayed unreachable; some metrics and events were not stored", job_id)


def _inputs_dir(workdir: Path, rank: Rank) -> Path:
    """Where this rank fetches the job's files and checkpoint: the work dir for rank 0 (as a single process does),
    a folder of its own for each other rank."""
    if rank.is_main:
        return workdir
    path = workdir / f"rank-{rank.rank}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _resume_point(
    store: ObjectStore, checkpoint: Artifact, inputs: Path, reporter: DatabaseReporter | NullReporter
) -> Path:
    """Unpack the newest stored checkpoint (an earlier attempt's, or a pause's) to resume training from it."""
    dest = inputs / "resume" / f"checkpoint-{checkpoint.step}"
    shutil.rmtree(dest.parent, ignore_errors=True)
    fetch_dir(store, checkpoint.storage_key, dest)
    if isinstance(reporter, NullReporter):  # rank 0 drops the steps to train again and says so
        return dest
    _forget_steps_after(checkpoint.job_id, checkpoint.step or 0)
    reporter.event(
        f"Resuming from the checkpoint at step {checkpoint.step}",
        {"step": checkpoint.step, "artifact_id": checkpoint.id},
    )
    return dest


def _parent_archive(spec: JobSpec) -> Artifact | None:
    """The stored archive (adapter or checkpoint) of the model the job continues."""
    assert spec.parent is not None
    with unit_of_work() as session:
        return artifacts.get_artifact_by_id(session, spec.parent.artifact_id)


def _load(job_id: str) -> tuple[TrainingJob, DatasetFile | None, DatasetFile | None, list[Artifact]]:
    """The job, its files and its stored checkpoints, in one read."""
    with unit_of_work() as session:
        job = jobs.get_job_by_id(session, job_id)
        assert job is not None, job_id
        train = files.get_file_any_team(session, job.training_file_id)
        valid = files.get_file_any_team(session, job.validation_file_id) if job.validation_file_id else None
        return job, train, valid, artifacts.trainer_checkpoints(session, job_id)


def _forget_steps_after(job_id: str, step: int) -> None:
    """Steps after `step` (a lost worker's last minutes) train again: drop their rows and events, so that each step
    is stored and streamed once."""

    def forget() -> int:
        with unit_of_work() as session:
            jobs.update_job(session, job_id, step=step)
            return metrics.delete_metrics_after(session, job_id, step)

    dropped = retry_db(forget, f"drop the steps of job {job_id} after {step}")
    if dropped:
        log.info("dropped %d metrics events after step %d; they will be trained again", dropped, step)


def _die_with_launcher() -> None:
    """Under torchrun, which starts each rank in a session of its own: the kernel kills this rank when torchrun dies
    (the runner killing it, or its worker dying), so no rank trains on for a job nobody watches."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # torchrun died before the call: nothing would send the signal now
            os._exit(1)


def training_failure(exc: TrainingError) -> JobOutcome:
    """The outcome of a failed run: the error's own code, message and side (the user's data or the system)."""
    return JobOutcome.failed(exc.code, str(exc), exc.side)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job, work = sys.argv[1], Path(sys.argv[2])
    claim = int(sys.argv[3]) if len(sys.argv) > 3 else None
    me = rank_from_env()
    if me.distributed:
        _die_with_launcher()
    try:
        outcome = main(job, work, claim)
    except Exception as exc:  # anything unexpected is the system's fault, recorded rather than lost
        log.exception("training failed")
        outcome = JobOutcome.failed("internal_error", f"{type(exc).__name__}: {exc}", ErrorSide.SYSTEM)
    if me.is_main:
        (work / "result.json").write_text(outcome.model_dump_json())
    if me.distributed:
        if outcome.status == "failed":
            # A failure on one rank can leave the others waiting in a collective: a non-zero exit makes torchrun
            # stop them all (the runner reads rank 0's result.json first, when it wrote one).
            log.error("rank %d of job %s failed: %s", me.rank, job, outcome.error)
            sys.exit(1)
        from worker.training.distributed import shutdown

        shutdown()
