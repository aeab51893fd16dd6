"""Per-team quotas: refusals name the quota and the usage; admins set them over REST and the CLI."""

from __future__ import annotations

import time

from tests.api import pool_helpers
from tests.api.pool_helpers import _file, auth, queue, submit
from tests.support.data import CHAT, TINY_MODEL, jsonl

register_worker = pool_helpers.register_worker  # fixtures
cancel_leftovers = pool_helpers.cancel_leftovers


def _set(api, admin, team, **limits):  # type: ignore[no-untyped-def]
    r = api.put(f"/v1/admin/teams/{team.team_id}/quotas", json=limits, headers=auth(admin))
    assert r.status_code == 200, r.text
    return r.json()


def test_team_sees_unlimited_defaults_and_only_admins_set_quotas(api, make_team) -> None:  # type: ignore[no-untyped-def]
    team, admin = make_team(), make_team(is_admin=True)
    body = api.get("/v1/quotas", headers=auth(team)).json()
    assert body["object"] == "team.quota" and body["team_id"] == team.team_id
    assert body["limits"]["max_queued_jobs"] is None and body["usage"]["queued_jobs"] == 0
    r = api.put(f"/v1/admin/teams/{team.team_id}/quotas", json={"max_queued_jobs": 1}, headers=auth(team))
    assert r.status_code == 403
    assert api.put("/v1/admin/teams/team-nope/quotas", json={}, headers=auth(admin)).status_code == 404
    assert _set(api, admin, team, max_queued_jobs=1)["limits"]["max_queued_jobs"] == 1
    assert api.get("/v1/quotas", headers=auth(team)).json()["limits"]["max_queued_jobs"] == 1


def test_queue_limit_refuses_with_429_naming_quota_and_usage(api, make_team, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    team, admin = make_team(), make_team(is_admin=True)
    _set(api, admin, team, max_queued_jobs=2)
    cancel_leftovers += [submit(api, team)["id"] for _ in range(2)]
    r = api.post(
        "/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": _file(api, team)}, headers=auth(team)
    )
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded" and err["param"] == "max_queued_jobs"
    assert "2 of 2" in err["message"]
    assert api.get("/v1/quotas", headers=auth(team)).json()["usage"]["queued_jobs"] == 2


def test_spent_gpu_hours_refuse_new_jobs_and_hold_queued_ones(
    api, make_team, register_worker, cancel_leftovers
) -> None:  # type: ignore[no-untyped-def]
    from tests.api.pool_helpers import Recorder
    from worker.dispatcher import dispatch

    team, admin = make_team(), make_team(is_admin=True)
    worker = register_worker("w")
    first = submit(api, team)["id"]
    queue(first)
    waiting = submit(api, team)["id"]
    cancel_leftovers.append(waiting)
    assert dispatch(Recorder()) == [first]
    from tests.api.pool_helpers import claim, finish

    claim(first, worker)
    time.sleep(0.5)
    finish(first, worker)
    _set(api, admin, team, gpu_hours_per_period=0.0001, period_hours=24)  # 0.36 s, already spent
    used = api.get("/v1/quotas", headers=auth(team)).json()["usage"]["gpu_hours_in_period"]
    assert used >= 0.0001
    r = api.post(
        "/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": _file(api, team)}, headers=auth(team)
    )
    assert r.status_code == 429 and r.json()["error"]["param"] == "gpu_hours_per_period"
    assert "GPU-hours used in the last 24 hours" in r.json()["error"]["message"]
    queue(waiting)
    assert dispatch(Recorder()) == []  # the idle worker stays idle rather than exceed the budget
    _set(api, admin, team)  # lifted
    assert dispatch(Recorder()) == [waiting]


def test_running_limit_holds_extra_jobs_in_the_queue(api, make_team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    from tests.api.pool_helpers import Recorder
    from worker.dispatcher import dispatch

    team, admin = make_team(), make_team(is_admin=True)
    _set(api, admin, team, max_running_jobs=1)
    jobs = [submit(api, team)["id"] for _ in range(2)]
    for j in jobs:
        queue(j)
    cancel_leftovers.extend(jobs)
    register_worker("w")
    register_worker("w")
    assert dispatch(Recorder()) == [jobs[0]]


def test_storage_quota_refuses_upload_with_403_and_stores_nothing(api, make_team) -> None:  # type: ignore[no-untyped-def]
    team, admin = make_team(), make_team(is_admin=True)
    size = len(jsonl(CHAT))
    _set(api, admin, team, max_dataset_storage_bytes=size + 10)
    _file(api, team)
    r = api.post(
        "/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"}, headers=auth(team)
    )
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["param"] == "max_dataset_storage_bytes" and f"{size} bytes stored" in err["message"]
    assert len(api.get("/v1/files", headers=auth(team)).json()["data"]) == 1


def test_cli_set_quota(api, make_team) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cli.main import app

    team = make_team()
    result = CliRunner().invoke(app, ["admin", "set-quota", team.name, "--max-queued", "3", "--gpu-hours", "10"])
    assert result.exit_code == 0, result.output
    limits = api.get("/v1/quotas", headers=auth(team)).json()["limits"]
    assert (
        limits["max_queued_jobs"] == 3 and limits["gpu_hours_per_period"] == 10 and limits["max_running_jobs"] is None
    )
