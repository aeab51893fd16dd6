"""Gang placement by the real dispatcher on a real Postgres: a multi-GPU job gets all its GPUs on one host at once,
is claimed and charged on each, and a host is held for it once it has waited past the bound."""

from __future__ import annotations

import secrets

from tests.api import pool_helpers
from tests.api.pool_helpers import Recorder, claim, submit_queued

register_worker = pool_helpers.register_worker  # fixtures
cancel_leftovers = pool_helpers.cancel_leftovers


def _reserved(*slots: str) -> list[str | None]:
    from db.models import Worker
    from db.session import unit_of_work

    with unit_of_work() as session:
        return [w.reserved_job_id if (w := session.get(Worker, s)) else None for s in slots]


def test_a_two_gpu_job_takes_two_slots_of_one_host_and_is_charged_for_both(
    api, make_team, register_worker, cancel_leftovers
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from db import lifecycle
    from db.models import GpuUsage
    from db.session import unit_of_work
    from worker.dispatcher import dispatch

    team = make_team()
    lone = register_worker("lone")  # a one-slot host: never half of a two-GPU job
    host = f"host-{secrets.token_hex(3)}"
    g0, g1 = register_worker("g0", host=host), register_worker("g1", host=host)
    job = submit_queued(api, team, cancel_leftovers, resources={"gpus": 2}, hyperparameters={"batch_size": 2})
    send = Recorder()
    assert dispatch(send) == [job]
    assert send.sent == [(job, host)]  # one message, to the host's own queue
    assert _reserved(g0, g1, lone) == [job, job, None]
    with unit_of_work() as session:
        assert lifecycle.claim(session, job, host, [g0, g1], host_id=host) is not None
    with unit_of_work() as session:
        charged = session.scalars(select(GpuUsage.worker_id).where(GpuUsage.job_id == job)).all()
    assert sorted(charged) == sorted([g0, g1])


def test_a_host_is_held_for_a_gang_that_waited_past_the_bound(
    api, make_team, register_worker, cancel_leftovers, override_settings
) -> None:  # type: ignore[no-untyped-def]
    from worker.dispatcher import dispatch

    override_settings(gang_reserve_after_seconds="0.01")
    small, big = make_team(), make_team()
    host = f"host-{secrets.token_hex(3)}"
    g0, g1 = register_worker("g0", host=host), register_worker("g1", host=host)
    running = submit_queued(api, small, cancel_leftovers)
    assert dispatch(Recorder()) == [running]
    (slot,) = [s for s in (g0, g1) if _reserved(s) == [running]]
    claim(running, slot)
    gang = submit_queued(api, big, cancel_leftovers, resources={"gpus": 2}, hyperparameters={"batch_size": 2})
    submit_queued(api, small, cancel_leftovers)  # a one-GPU job that would fit the free slot
    # The free slot stays free for the gang, which waited past the bound; the one-GPU job does not take it.
    assert dispatch(Recorder()) == []
    pool_helpers.finish(running, slot)
    send = Recorder()
    assert dispatch(send) == [gang] and send.sent == [(gang, host)]
