"""GET /v1/pool, memory estimates on the job, and refusal of jobs no worker could fit."""

from __future__ import annotations

from tests.api import pool_helpers
from tests.api.pool_helpers import auth, claim, queue, submit
from tests.support.data import TINY_MODEL

register_worker = pool_helpers.register_worker  # fixtures
cancel_leftovers = pool_helpers.cancel_leftovers


def test_job_shows_memory_estimate_that_grows_with_batch_and_length(api, team, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    small = submit(api, team, hyperparameters={"batch_size": 1}, training={"max_seq_length": 128})
    large = submit(api, team, hyperparameters={"batch_size": 8}, training={"max_seq_length": 4096})
    cancel_leftovers += [small["id"], large["id"]]
    assert 0 < small["estimated_gpu_memory_gb"] < large["estimated_gpu_memory_gb"]
    assert small["resources"] is None
    stated = submit(api, team, resources={"gpu_type": "L4"})
    cancel_leftovers.append(stated["id"])
    assert stated["resources"] == {"gpu_type": "L4"}


def test_estimate_counts_parameters_from_safetensors(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    import torch  # the test may use torch to check the count; the API does not
    from safetensors.torch import load_file

    from core.placement import estimate_memory_bytes, read_model_shape

    expected = sum(t.numel() for t in load_file(tiny_model_dir / "model.safetensors").values())
    shape = read_model_shape(tiny_model_dir)
    assert shape is not None and shape.parameters == expected and shape.hidden_size == 64
    del torch
    # A 7B Llama as QLoRA (r=16, batch 4 × 2048) lands in the 10–20 GB band practitioners report.
    from core.placement import ModelShape

    llama7b = ModelShape(6_738_415_616, 4096, 32, 11008, 32000)
    gb = (
        estimate_memory_bytes(
            llama7b, quantized=True, lora_r=16, all_linear=True, batch_size=4, seq_len=2048, gradient_checkpointing=True
        )
        / 1e9
    )
    assert 10 < gb < 20, gb
    full = estimate_memory_bytes(
        llama7b, quantized=False, lora_r=16, all_linear=True, batch_size=4, seq_len=2048, gradient_checkpointing=True
    )
    assert full / 1e9 > gb + 8  # 16-bit weights alone are 13.5 GB


def test_job_no_worker_can_fit_is_refused_naming_resources(api, team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    register_worker("l4", "NVIDIA L4", 24)
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": _file_id(api, team), "resources": {"min_gpu_memory_gb": 80}},
        headers=auth(team),
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "resources" and err["code"] == "no_fitting_worker"
    assert "80.0 GB" in err["message"] and "NVIDIA L4 with 24.0 GB" in err["message"]
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": _file_id(api, team), "resources": {"gpu_type": "H100"}},
        headers=auth(team),
    )
    assert r.status_code == 400 and "'H100'" in r.json()["error"]["message"]
    ok = submit(api, team, resources={"min_gpu_memory_gb": 20, "gpu_type": "l4"})  # fits the L4
    cancel_leftovers.append(ok["id"])


def test_cpu_only_pool_takes_jobs_without_stated_resources(api, team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    register_worker("cpu")
    cancel_leftovers.append(submit(api, team)["id"])
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": _file_id(api, team), "resources": {"min_gpu_memory_gb": 8}},
        headers=auth(team),
    )
    assert r.status_code == 400 and "only CPU workers" in r.json()["error"]["message"]


def _file_id(api, team) -> str:  # type: ignore[no-untyped-def]
    from tests.api.pool_helpers import _file

    return _file(api, team)


def test_pool_shows_workers_queues_and_only_own_job_ids(api, make_team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    mine, theirs, admin = make_team(), make_team(), make_team(is_admin=True)
    gpu = register_worker("gpu", "NVIDIA L4", 24)
    cpu = register_worker("cpu")
    running = submit(api, theirs)["id"]
    queue(running)
    claim(running, gpu)
    waiting = submit(api, mine)["id"]
    queue(waiting)
    cancel_leftovers.append(waiting)

    def view(team):  # type: ignore[no-untyped-def]
        r = api.get("/v1/pool", headers=auth(team))
        assert r.status_code == 200, r.text
        body = r.json()
        workers = {w["id"]: w for w in body["workers"]}
        return workers, {q["team_id"]: q for q in body["queues"]}, body["other_teams"]

    workers, queues, others = view(mine)
    assert workers[gpu]["state"] == "busy" and workers[gpu]["gpu_name"] == "NVIDIA L4"
    assert workers[gpu]["gpu_memory_total_gb"] == 24.0
    assert workers[gpu]["job"] == {"id": None, "own": False, "status": None}  # another team's job id stays hidden
    assert workers[cpu]["state"] == "idle" and workers[cpu]["device"] == "cpu"
    assert queues[mine.team_id]["queued"] == 1 and queues[mine.team_id]["job_ids"] == [waiting]
    # Other teams are one anonymous total: no id, name or per-team count of theirs.
    assert theirs.team_id not in queues and set(queues) == {mine.team_id}
    assert others["teams"] >= 1 and others["running"] >= 1
    workers, _, _ = view(theirs)
    assert workers[gpu]["job"] == {"id": running, "own": True, "status": "running"}
    workers, queues, others = view(admin)
    assert workers[gpu]["job"]["id"] == running and queues[mine.team_id]["job_ids"] == [waiting]
    assert queues[theirs.team_id]["running"] == 1 and others is None
    _cancel_running(running, gpu)


def test_worker_missing_heartbeats_is_lost_and_gets_no_work(api, team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import Worker
    from db.session import unit_of_work
    from tests.api.pool_helpers import Recorder
    from worker.dispatcher import dispatch

    stale = register_worker("stale")
    with unit_of_work() as session:  # as if it stopped beating 10 minutes ago
        session.execute(
            update(Worker)
            .where(Worker.id == stale)
            .values(last_heartbeat=Worker.last_heartbeat - timedelta(minutes=10))
        )
    job = submit(api, team)["id"]
    queue(job)
    cancel_leftovers.append(job)
    assert dispatch(Recorder()) == []
    states = {w["id"]: w["state"] for w in api.get("/v1/pool", headers=auth(team)).json()["workers"]}
    assert states[stale] == "lost"


def _cancel_running(job_id: str, worker_id: str) -> None:
    from core.enums import JobStatus
    from db.repositories import jobs, workers
    from db.session import unit_of_work

    with unit_of_work() as session:
        jobs.transition(session, job_id, [JobStatus.RUNNING], JobStatus.CANCELLED)
        workers.set_current_job(session, worker_id, None)
