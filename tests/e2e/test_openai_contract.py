"""OpenAI's API surface driven by the official SDK against the real service, every answer checked against
OpenAI's own schemas: metadata filters, file pages, chunked uploads, result files, model deletion, sharing."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest
from openai import NotFoundError, OpenAI

from tests.contract.openai_spec import assert_conforms
from tests.support.data import TINY_MODEL
from tests.support.teams import create_team

ROWS = [
    {"messages": [{"role": "user", "content": f"Say {w}"}, {"role": "assistant", "content": w}]}
    for w in ["red", "green", "blue", "pink"] * 3
]
BODY = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def _sdk(running_service, key: str) -> OpenAI:  # type: ignore[no-untyped-def]
    return OpenAI(base_url=running_service.base_url + "/v1", api_key=key, max_retries=0)


def _raw(running_service, key: str, path: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = httpx.get(running_service.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def _finished(sdk: OpenAI, job_id: str, timeout: float = 600):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise TimeoutError(job_id)


@pytest.fixture(scope="module")
def trained(running_service):  # type: ignore[no-untyped-def]
    """One short fine-tune shared by the tests below: (team key, team id, job)."""
    with running_service.session() as session:
        team = create_team(session)
    key, team_id = team.key, team.team_id
    sdk = _sdk(running_service, key)
    train = sdk.files.create(file=("train.jsonl", BODY), purpose="fine-tune")
    valid = sdk.files.create(file=("valid.jsonl", BODY[: BODY.index(b"\n") + 1] * 2), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        validation_file=valid.id,
        hyperparameters={"n_epochs": 1, "batch_size": 2},
        metadata={"project": "contract", "owner": "ci"},
        extra_body={"quantization": "none", "artifacts": ["adapter"], "training": {"max_seq_length": 64}},
    )
    done = _finished(sdk, job.id)
    assert done.status == "succeeded", done.error
    return key, team_id, done


def test_job_objects_and_lists_follow_the_schemas(running_service, trained) -> None:  # type: ignore[no-untyped-def]
    key, _, job = trained
    assert_conforms("FineTuningJob", _raw(running_service, key, f"/v1/fine_tuning/jobs/{job.id}"))
    assert_conforms("ListPaginatedFineTuningJobsResponse", _raw(running_service, key, "/v1/fine_tuning/jobs"))
    events = _raw(running_service, key, f"/v1/fine_tuning/jobs/{job.id}/events?limit=100")
    assert_conforms("ListFineTuningJobEventsResponse", events)
    assert {e["kind"] for e in events["data"]} >= {"status", "metrics", "message"}  # tunepool's finer kinds
    checkpoints = _raw(running_service, key, f"/v1/fine_tuning/jobs/{job.id}/checkpoints")
    assert_conforms("ListFineTuningJobCheckpointsResponse", checkpoints)
    assert_conforms("ListModelsResponse", _raw(running_service, key, "/v1/models"))
    assert_conforms("ListFilesResponse", _raw(running_service, key, "/v1/files"))


def test_metadata_filter_as_the_sdk_sends_it(running_service, trained) -> None:  # type: ignore[no-untyped-def]
    key, _, job = trained
    sdk = _sdk(running_service, key)
    assert [j.id for j in sdk.fine_tuning.jobs.list(metadata={"project": "contract"})] == [job.id]
    assert [j.id for j in sdk.fine_tuning.jobs.list(metadata={"project": "contract", "owner": "ci"})] == [job.id]
    assert list(sdk.fine_tuning.jobs.list(metadata={"project": "other"})) == []


def test_files_pages_through_the_sdk(running_service, trained) -> None:  # type: ignore[no-untyped-def]
    key, _, _ = trained
    sdk = _sdk(running_service, key)
    ids = [sdk.files.create(file=(f"p{i}.jsonl", BODY), purpose="fine-tune").id for i in range(3)]
    first = sdk.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2] and first.has_more
    everything = [f.id for f in sdk.files.list(limit=2)]  # the SDK follows `after` through every page
    assert everything[:3] == ids[::-1] and len(everything) == len(set(everything)) >= 5


def test_chunked_upload_through_the_sdk(running_service, trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key, _, _ = trained
    sdk = _sdk(running_service, key)
    path = tmp_path / "big.jsonl"
    path.write_bytes(BODY * 4)
    upload = sdk.uploads.upload_file_chunked(
        file=path, mime_type="application/jsonl", purpose="fine-tune", part_size=len(BODY)
    )  # four parts
    assert upload.status == "completed" and upload.file is not None
    assert upload.file.bytes == len(BODY) * 4
    assert sdk.files.content(upload.file.id).content == BODY * 4


def test_result_file_is_openai_csv(running_service, trained) -> None:  # type: ignore[no-untyped-def]
    key, _, job = trained
    sdk = _sdk(running_service, key)
    assert len(job.result_files) == 1
    meta = sdk.files.retrieve(job.result_files[0])
    assert meta.purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(sdk.files.content(job.result_files[0]).text)))
    assert list(rows[0]) == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1)) and len(rows) == 6  # 12 rows / batch 2
    assert all(float(r["train_loss"]) > 0 for r in rows)
    assert any(r["valid_loss"] for r in rows)


def test_share_then_revoke_then_delete_through_the_sdk(running_service, trained, make_team) -> None:  # type: ignore[no-untyped-def]
    key, _, job = trained
    owner = _sdk(running_service, key)
    other = make_team()
    guest = _sdk(running_service, other.key)
    name = job.fine_tuned_model
    with pytest.raises(NotFoundError):
        guest.models.retrieve(name)
    granted = owner.fine_tuning.checkpoints.permissions.create(name, project_ids=[other.team_id])
    permission = granted.data[0]
    assert permission.project_id == other.team_id
    assert guest.models.retrieve(name).id == name
    shared = _raw(running_service, other.key, f"/v1/models/{name}")
    adapter = next(a for a in shared["artifacts"] if a["kind"] == "adapter")
    r = httpx.get(running_service.base_url + adapter["download_url"], headers={"Authorization": f"Bearer {other.key}"})
    assert r.status_code == 200 and len(r.content) == adapter["bytes"]
    listed = owner.fine_tuning.checkpoints.permissions.retrieve(name)
    assert [p.id for p in listed.data] == [permission.id]
    deleted = owner.fine_tuning.checkpoints.permissions.delete(permission.id, fine_tuned_model_checkpoint=name)
    assert deleted.deleted
    with pytest.raises(NotFoundError):
        guest.models.retrieve(name)

    gone = owner.models.delete(name)
    assert gone.deleted and gone.id == name
    assert name not in [m.id for m in owner.models.list()]
    with pytest.raises(NotFoundError):
        owner.models.retrieve(name)


def test_cancel_answers_cancelled_and_the_worker_stops(running_service, trained) -> None:  # type: ignore[no-untyped-def]
    key, _, _ = trained
    sdk = _sdk(running_service, key)
    train = sdk.files.create(file=("long.jsonl", BODY), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        extra_body={"quantization": "none", "artifacts": ["adapter"], "training": {"max_steps": 5000}},
    )
    deadline = time.monotonic() + 300
    while sdk.fine_tuning.jobs.retrieve(job.id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancelled = sdk.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    assert_conforms("FineTuningJob", _raw(running_service, key, f"/v1/fine_tuning/jobs/{job.id}"))
    steps = _raw(running_service, key, f"/v1/fine_tuning/jobs/{job.id}/metrics")["data"]
    # The worker is free again within seconds: the next job trains and succeeds.
    after = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        hyperparameters={"n_epochs": 1},
        extra_body={"quantization": "none", "artifacts": ["adapter"], "training": {"max_steps": 2}},
    )
    assert _finished(sdk, after.id, timeout=300).status == "succeeded"
    assert sdk.fine_tuning.jobs.retrieve(job.id).status == "cancelled"  # the stopped worker did not overwrite it
    later = _raw(running_service, key, f"/v1/fine_tuning/jobs/{job.id}/metrics")["data"]
    assert len(later) <= len(steps) + 3  # at most the steps in flight when the flag was seen
