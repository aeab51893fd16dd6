"""A job's Celery message lost or delivered twice: the job still trains, exactly once.

The messages are really deleted from and duplicated in the worker's own Redis list. The worker is frozen
(FaultStack.freeze_worker) before the job is sent, so the message waits in that list and nowhere else.
"""

from __future__ import annotations

from tests.faultstack import FaultStack
from tests.support.waiting import wait_until

STARTED = "Fine-tuning job started"


def started_events(stack: FaultStack, job_id: str) -> int:
    return sum(e["message"].startswith(STARTED) for e in stack.events(job_id))


def trained_steps(stack: FaultStack, job_id: str) -> list[int]:
    """Steps of the job's `metrics` events: one per step trained (the metric rows would hide a re-run step)."""
    return [e["data"]["step"] for e in stack.events(job_id) if e["type"] == "metrics"]


def times_dispatched(stack: FaultStack, job_id: str) -> int:
    """How often the dispatcher sent the job (it logs `dispatched [ids]` after each round's sends)."""
    return sum(job_id in line for line in stack.log_text("dispatcher").splitlines() if "dispatched [" in line)


def wait_for_log(stack: FaultStack, process: str, text: str, timeout: float = 30) -> None:
    logged = f"{process} never logged {text!r}"
    wait_until(lambda: text in stack.log_text(process), timeout, interval=0.2, message=logged)


def test_a_lost_message_is_sent_again_and_the_job_trains_once(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack: FaultStack = make_fault_stack(workers=["w1"], redispatch_after_seconds=3)
    file_id = stack.upload()
    stack.freeze_worker("w1")
    job_id = stack.submit(file_id, steps=4)
    stack.wait_dispatched(job_id)

    assert stack.wait_queued("w1", 1) == [job_id]  # the one and only message for it
    with stack.redis() as r:
        assert r.delete(stack.worker_queue("w1")) == 1  # lost
    stack.thaw_worker("w1")

    done = stack.wait_status(job_id, timeout=60)
    assert done["status"] == "succeeded", done
    assert stack.attempts(job_id) == 1 and started_events(stack, job_id) == 1
    assert trained_steps(stack, job_id) == stack.metric_steps(job_id) == [1, 2, 3, 4]
    # Unclaimed for redispatch_after_seconds, the job went back to placement and was sent a second time.
    assert times_dispatched(stack, job_id) >= 2
    resent = [e for e in stack.events(job_id) if (e.get("data") or {}).get("reason") == "message_unclaimed"]
    assert resent and resent[0]["level"] == "warning"


def test_a_message_delivered_twice_trains_the_job_once(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    # The default redispatch delay (60 s): the only second message is the one this test sends.
    stack: FaultStack = make_fault_stack(workers=["w1"])
    file_id = stack.upload()
    stack.freeze_worker("w1")
    job_id = stack.submit(file_id, steps=6)
    stack.wait_dispatched(job_id)
    stack.wait_queued("w1", 1)
    stack.send_run_job(job_id, "w1")
    assert stack.queued_job_ids("w1") == [job_id, job_id]
    # Waits for the worker: it is the only one, and reserved for the first job until it claims it.
    next_job = stack.submit(file_id, steps=2)
    stack.thaw_worker("w1")

    done = stack.wait_status(job_id, timeout=60)
    assert done["status"] == "succeeded", done
    assert stack.attempts(job_id) == 1 and started_events(stack, job_id) == 1
    assert trained_steps(stack, job_id) == stack.metric_steps(job_id) == [1, 2, 3, 4, 5, 6]
    wait_for_log(stack, "w1", f"job {job_id} is not queued any more; skipping duplicate delivery")

    # The duplicate did not hold the worker: it takes the next job.
    after = stack.wait_status(next_job, timeout=60)
    assert after["status"] == "succeeded", after
    assert stack.job_row(next_job).worker_id == stack.worker_id("w1") and stack.attempts(next_job) == 1
    assert stack.attempts(job_id) == 1 and started_events(stack, job_id) == 1  # still
    assert times_dispatched(stack, job_id) == 1  # the dispatcher sent it once; the second copy was ours
    assert stack.queued_job_ids("w1") == []
