"""Multi-GPU requests at submission: resources.gpus must fit one host's GPUs, the batch must split evenly."""

from __future__ import annotations

import secrets
from typing import Any

from tests.api import pool_helpers
from tests.api.pool_helpers import auth, submit
from tests.support.data import CHAT, TINY_MODEL, jsonl

register_worker = pool_helpers.register_worker  # fixture


def _create(api: Any, team: Any, **body: Any) -> Any:
    r = api.post(
        "/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"}, headers=auth(team)
    )
    assert r.status_code == 200, r.text
    payload = {"model": TINY_MODEL, "training_file": r.json()["id"], "quantization": "none", **body}
    return api.post("/v1/fine_tuning/jobs", json=payload, headers=auth(team))


def test_a_job_wider_than_any_host_is_refused_naming_resources_gpus(api, team, register_worker) -> None:  # type: ignore[no-untyped-def]
    host = f"h-{secrets.token_hex(3)}"
    register_worker("a", host=host)
    register_worker("b", host=host)
    register_worker("single")
    # 3 GPUs: no host has 3, and 3 hosts x 1 needs a third host.
    r = _create(api, team, resources={"gpus": 3})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "resources.gpus" and "one host has at most 2" in error["message"]
    # 4 GPUs could only be 2 hosts x 2: the single host has one.
    assert _create(api, team, resources={"gpus": 4}).json()["error"]["param"] == "resources.gpus"
    job = submit(api, team, resources={"gpus": 2}, hyperparameters={"batch_size": 4})
    assert job["resources"] == {"gpus": 2}  # echoed as asked; one GPU stays implicit
    assert submit(api, team).get("resources") in (None, {})


def test_the_batch_must_split_evenly_over_the_gpus(api, team, register_worker) -> None:  # type: ignore[no-untyped-def]
    host = f"h-{secrets.token_hex(3)}"
    for name in "ab":
        register_worker(name, host=host)
    r = _create(api, team, resources={"gpus": 2}, hyperparameters={"batch_size": 3})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "hyperparameters.batch_size"
    assert "resources.gpus=2" in r.json()["error"]["message"]
    auto = submit(api, team, resources={"gpus": 2})
    assert auto["hyperparameters"]["batch_size"] % 2 == 0


def test_gpu_counts_out_of_range_are_refused(api, team) -> None:  # type: ignore[no-untyped-def]
    for bad in (0, 65, "two"):
        r = _create(api, team, resources={"gpus": bad})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "resources.gpus"


def test_training_parallelism_is_checked(api, team) -> None:  # type: ignore[no-untyped-def]
    r = _create(api, team, training={"parallelism": "tensor"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "training.parallelism"


def test_a_job_wider_than_any_host_is_accepted_when_hosts_together_hold_it(api, team, register_worker) -> None:  # type: ignore[no-untyped-def]
    register_worker("one")
    register_worker("two")  # two one-slot hosts: a two-GPU job runs as 2 hosts x 1 GPU
    job = submit(api, team, resources={"gpus": 2}, hyperparameters={"batch_size": 2})
    assert job["resources"] == {"gpus": 2}
