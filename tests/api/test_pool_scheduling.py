"""Fair share and placement by the real dispatcher on a real Postgres (workers registered by heartbeat rows)."""

from __future__ import annotations

import threading
import time

from tests.api import pool_helpers
from tests.api.pool_helpers import Recorder, claim, claim_and_finish, submit_queued

register_worker = pool_helpers.register_worker  # fixtures
cancel_leftovers = pool_helpers.cancel_leftovers


def test_burst_of_one_team_does_not_starve_another(api, make_team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    from worker.dispatcher import dispatch

    busy, quiet = make_team(), make_team()
    w = register_worker("w")
    # The busy team has used the pool recently.
    first = submit_queued(api, busy, cancel_leftovers)
    assert dispatch(send := Recorder()) == [first] and send.sent == [(first, w)]
    claim(first, w)
    time.sleep(0.3)
    from tests.api.pool_helpers import finish

    finish(first, w)
    burst = [submit_queued(api, busy, cancel_leftovers) for _ in range(5)]
    urgent = submit_queued(api, busy, cancel_leftovers, priority=10)
    single = submit_queued(api, quiet, cancel_leftovers)  # submitted last
    order = []
    for _ in range(4):
        send = Recorder()
        placed = dispatch(send)
        assert len(placed) == 1 and send.sent[0][1] == w  # one idle worker: one message, no backlog
        assert dispatch(Recorder()) == []  # the worker is reserved until it claims
        order.append(placed[0])
        claim_and_finish(placed[0], w)
    # The quiet team's job starts at the next free GPU; then the busy team's by priority, then age.
    assert order == [single, urgent, burst[0], burst[1]]


def test_free_workers_are_shared_between_teams_in_one_round(api, make_team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    from worker.dispatcher import dispatch

    a, b = make_team(), make_team()
    a_jobs = [submit_queued(api, a, cancel_leftovers) for _ in range(3)]
    b_jobs = [submit_queued(api, b, cancel_leftovers) for _ in range(3)]
    workers = {register_worker("w") for _ in range(2)}
    send = Recorder()
    placed = dispatch(send)
    assert {w for _, w in send.sent} == workers
    assert set(placed) == {a_jobs[0], b_jobs[0]}


def test_jobs_go_only_to_workers_that_fit(api, make_team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    from worker.dispatcher import dispatch

    team = make_team()
    small = register_worker("l4", "NVIDIA L4", 24)
    big = register_worker("a100", "NVIDIA A100-SXM4-80GB", 85)
    needs_big = submit_queued(api, team, cancel_leftovers, resources={"min_gpu_memory_gb": 40})
    needs_a100 = submit_queued(api, team, cancel_leftovers, resources={"gpu_type": "a100"})
    plain = submit_queued(api, team, cancel_leftovers)
    send = Recorder()
    dispatch(send)
    # The big job takes the A100; the A100-only job must wait for it; the plain job fits the L4.
    assert dict(send.sent) == {needs_big: big, plain: small}
    assert needs_a100 not in dict(send.sent)


def test_concurrent_dispatchers_never_place_a_job_twice(api, make_team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    from worker.dispatcher import dispatch

    teams = [make_team(), make_team()]
    for i in range(24):
        submit_queued(api, teams[i % 2], cancel_leftovers)
    workers = [register_worker("w") for _ in range(5)]
    send = Recorder()
    all_placed: list[str] = []
    for _round in range(4):
        start = threading.Barrier(4)
        results: list[list[str]] = []

        def run(barrier: threading.Barrier, out: list[list[str]]) -> None:
            barrier.wait()  # all four dispatchers start their round at once
            out.append(dispatch(send))

        threads = [threading.Thread(target=run, args=(start, results)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        placed = [j for r in results for j in r]
        round_sends = send.sent[len(all_placed) :]
        assert len(placed) == len(workers) == len(round_sends)  # every idle worker got exactly one job
        assert sorted(w for _, w in round_sends) == sorted(workers)
        all_placed += placed
        for job_id, worker_id in round_sends:
            claim_and_finish(job_id, worker_id)
    assert len(all_placed) == len(set(all_placed)) == 20  # never the same job twice
