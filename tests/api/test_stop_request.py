"""A running job's stop request is polled once, by the runner: a pause is handed to the training child in a file
(which its reporter reads without a query), a cancel kills the child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.api import pool_helpers
from tests.api.pool_helpers import claim, queue, submit
from tests.support.teams import TeamKey

cancel_leftovers = pool_helpers.cancel_leftovers  # fixture
register_worker = pool_helpers.register_worker  # fixture
# A child that trains until its reporter is asked to stop.
CHILD = "import sys, time, pathlib\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)"


def _running_job(api: Any, team: TeamKey, register_worker: Any, cancel_leftovers: list[str]) -> tuple[str, int]:
    from db.models import TrainingJob
    from db.session import unit_of_work

    job_id = str(submit(api, team)["id"])
    cancel_leftovers.append(job_id)
    queue(job_id)
    claim(job_id, register_worker("runner"))
    with unit_of_work() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None and job.status == "running"
        return job_id, job.attempts


def test_a_pause_reaches_the_child_through_the_runner(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    from core.settings import get_settings
    from core.storage import configured_store
    from worker import runner
    from worker.reporter import STOP_FILE, DatabaseReporter

    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers)
    stop = tmp_path / STOP_FILE
    reporter = DatabaseReporter(job_id, team.team_id, configured_store(get_settings()), attempt=attempt, stop_file=stop)
    assert reporter.should_stop() is None
    r = api.post(f"/v1/fine_tuning/jobs/{job_id}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text  # paused at once, as OpenAI answers
    assert reporter.should_stop() is None  # the reporter does not poll the database itself

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(stop)], start_new_session=True)  # as the runner
    assert runner._wait(child, job_id, attempt, stop) is None  # the child stopped on its own, not killed
    assert child.returncode == 0
    assert reporter.should_stop() == "pause"


def test_a_cancel_kills_the_child(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    from worker import runner

    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers)
    r = api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    stop = tmp_path / "never-written"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(stop)], start_new_session=True)  # as the runner
    assert runner._wait(child, job_id, attempt, stop) == "cancelled"
    assert child.returncode is not None and child.returncode < 0  # killed by a signal
    assert not stop.exists()


def _owns(job_id: str, attempt: int) -> bool:
    from db.repositories import jobs
    from db.session import unit_of_work

    with unit_of_work() as session:
        return jobs.owns(session, job_id, attempt)


def _job(job_id: str):  # type: ignore[no-untyped-def]
    from db.models import TrainingJob
    from db.session import unit_of_work

    with unit_of_work() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _events(api, job_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["message"] for e in api.get(f"/v1/fine_tuning/jobs/{job_id}/events?limit=100").json()["data"]]


def test_a_paused_job_stays_its_workers_until_the_checkpoint_is_saved(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers
) -> None:
    from db import lifecycle
    from db.session import unit_of_work

    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers)
    assert api.post(f"/v1/fine_tuning/jobs/{job_id}/pause").json()["status"] == "paused"
    assert _owns(job_id, attempt)  # its worker may still write the pause checkpoint and the last metrics
    assert not _owns(job_id, attempt + 1)
    with unit_of_work() as session:
        lifecycle.confirm_pause(session, job_id, attempt, step=3)
    assert not _owns(job_id, attempt)  # settled: nothing of that claim lands any more
    assert not _job(job_id).pause_requested
    assert "Job paused at step 3; resume continues from there" in _events(api, job_id)
    assert api.post(f"/v1/fine_tuning/jobs/{job_id}/resume").json()["status"] == "queued"


def test_a_pause_whose_training_fails_or_whose_worker_vanishes_stays_paused(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers
) -> None:
    from db import lifecycle
    from db.session import unit_of_work

    failed, attempt = _running_job(api, team, register_worker, cancel_leftovers)
    api.post(f"/v1/fine_tuning/jobs/{failed}/pause")
    error = {"code": "internal_error", "message": "disk full", "param": None, "side": "system"}
    with unit_of_work() as session:
        assert not lifecycle.fail(session, failed, error, attempt=attempt)
    job = _job(failed)
    assert job.status == "paused" and not job.pause_requested and job.error is None
    assert any("Training failed (disk full) before the pause checkpoint was saved" in m for m in _events(api, failed))

    lost, attempt = _running_job(api, team, register_worker, cancel_leftovers)
    api.post(f"/v1/fine_tuning/jobs/{lost}/pause")
    with unit_of_work() as session:
        lifecycle.requeue_lost(session, _job(lost), "Worker w was lost", max_attempts=3)
    job = _job(lost)
    assert job.status == "paused" and not job.pause_requested and job.worker_losses == 0
    assert api.post(f"/v1/fine_tuning/jobs/{lost}/resume").json()["status"] == "queued"


def test_resuming_while_the_checkpoint_is_still_saved_fences_the_old_claim(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers
) -> None:
    from db.repositories import jobs
    from db.session import unit_of_work

    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers)
    api.post(f"/v1/fine_tuning/jobs/{job_id}/pause")
    assert api.post(f"/v1/fine_tuning/jobs/{job_id}/resume").json()["status"] == "queued"
    assert not _owns(job_id, attempt)  # the old worker's late checkpoint is refused; the next claim resumes
    with unit_of_work() as session:
        assert jobs.stop_request(session, job_id, attempt) == "lost"  # and its runner stops the child
