"""Redis restarting empty (it keeps nothing on disk): queued jobs are sent from Postgres and succeed once."""

from __future__ import annotations

import signal
import time

from tests.faultstack import FaultStack


def test_queued_jobs_survive_a_redis_restart(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack: FaultStack = make_fault_stack(workers=["w1"], redispatch_after_seconds=3)
    file_id = stack.upload()
    # The worker is frozen, so the message sent for this job waits in Redis, unclaimed.
    stack.kill_worker("w1", signal.SIGSTOP)
    sent_before = stack.submit(file_id, steps=4, suffix="before")
    stack.wait_dispatched(sent_before)

    # Redis dies, taking the message with it; while it is down the API still takes jobs (the doorbell and the
    # rate limiter fail open; Postgres is the record).
    stack.kill_redis()
    time.sleep(0.5)
    sent_during = stack.submit(file_id, steps=4, suffix="during")
    assert stack.job(sent_during)["status"] in ("validating_files", "queued")

    stack.start_redis()  # back, empty
    stack.kill_worker("w1", signal.SIGCONT)
    for job_id in (sent_before, sent_during):
        done = stack.wait_status(job_id, timeout=240)
        assert done["status"] == "succeeded", done
    kinds = {a["kind"] for a in stack.http.get(f"/fine_tuning/jobs/{sent_before}/artifacts").json()["data"]}
    assert "adapter" in kinds
    # Whichever message got through (the frozen worker may hold the first in memory; the job submitted during
    # the outage could only be sent from Postgres once Redis was back), each job trained exactly once.
    for job_id in (sent_before, sent_during):
        assert stack.attempts(job_id) == 1
