"""Sharing a fine-tune or checkpoint with another team, deleting a fine-tune, and checkpoint model names.

The succeeded job is made by a factory through the repositories (the training itself is covered by tests/e2e):
its rows and archives are what a worker leaves, so every API path here runs against real rows and files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.contract.openai_spec import assert_conforms
from tests.support.data import TINY_MODEL


@dataclass
class FineTune:
    job_id: str
    name: str
    checkpoint: str
    artifact_ids: dict[str, str]


def _client(key: str) -> TestClient:
    from api.app import create_app

    return TestClient(create_app(), headers={"Authorization": f"Bearer {key}"})


def _make_fine_tune(team_id: str, team_name: str, tmp: Path, *, succeeded: bool = True) -> FineTune:
    """A job as a worker leaves it: the adapter, merged and step-5 checkpoint archives stored, rows committed."""
    from core.enums import JobStatus
    from core.ids import new_id
    from core.naming import fine_tuned_model_name
    from core.schemas.spec import JobSpec, ResolvedHyperparameters
    from core.settings import get_settings
    from core.storage import configured_store
    from db.models import Artifact, DatasetFile, TrainingJob
    from db.session import unit_of_work

    store = configured_store(get_settings())
    job_id = new_id("ftjob")
    name = fine_tuned_model_name(TINY_MODEL, team_name, "shared", job_id)
    with unit_of_work() as session:
        file = DatasetFile(
            id=new_id("file"), team_id=team_id, filename="t.jsonl", purpose="fine-tune", bytes=1, sha256="0" * 64,
            format="text", line_count=1, storage_key=f"files/{team_id}/x.jsonl",
        )  # fmt: skip
        session.add(file)
        spec = JobSpec(hyperparameters=ResolvedHyperparameters(n_epochs=1, batch_size=1, learning_rate_multiplier=1))
        session.add(
            TrainingJob(
                id=job_id, team_id=team_id, model=TINY_MODEL, training_file_id=file.id,
                spec=spec.model_dump(mode="json"), suffix="shared", seed=42, priority=0, step=10, total_steps=10,
                attempts=1,
                # Not succeeded: paused, so no reaper takes it for a running job whose worker vanished.
                status=(JobStatus.SUCCEEDED if succeeded else JobStatus.PAUSED).value,
                fine_tuned_model=name if succeeded else None,
                finished_at=datetime.now(UTC) if succeeded else None,
            )
        )  # fmt: skip
        session.flush()
        ids = {}
        for kind, step in (("checkpoint", 5), ("adapter", 10), ("merged", 10)):
            if kind != "checkpoint" and not succeeded:
                continue
            payload = f"{kind}-{job_id}".encode()
            src = tmp / f"{kind}.tar"
            src.write_bytes(payload)
            key = f"artifacts/{job_id}/{kind}.tar"
            store.put_file(key, src)
            art = Artifact(
                id=new_id("art"), job_id=job_id, team_id=team_id, kind=kind, filename=f"{kind}.tar", storage_key=key,
                bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(), step=step,
            )  # fmt: skip
            session.add(art)
            ids[kind] = art.id
    return FineTune(job_id, name, f"{name}:ckpt-step-5", ids)


@pytest.fixture
def owner(make_team, tmp_path) -> Iterator[tuple[TestClient, FineTune, object]]:  # type: ignore[no-untyped-def]
    team = make_team()
    with _client(team.key) as client:
        yield client, _make_fine_tune(team.team_id, team.name, tmp_path), team


def test_share_download_and_revoke(owner, make_team) -> None:  # type: ignore[no-untyped-def]
    client, ft, _ = owner
    other = make_team()
    with _client(other.key) as b:
        assert ft.name not in [m["id"] for m in b.get("/v1/models").json()["data"]]
        assert b.get(f"/v1/models/{ft.name}").status_code == 404
        assert b.get(f"/v1/artifacts/{ft.artifact_ids['adapter']}/content").status_code == 404

        r = client.post(f"/v1/fine_tuning/checkpoints/{ft.name}/permissions", json={"project_ids": [other.team_id]})
        assert r.status_code == 200, r.text
        assert_conforms("ListFineTuningCheckpointPermissionResponse", r.json())
        permission = r.json()["data"][0]
        assert permission["project_id"] == other.team_id and permission["id"].startswith("cp-")

        listed = b.get("/v1/models").json()
        assert_conforms("ListModelsResponse", listed)
        assert ft.name in [m["id"] for m in listed["data"]]
        model = b.get(f"/v1/models/{ft.name}").json()
        assert_conforms("Model", model)
        assert model["owned_by"] != other.team_id and {a["kind"] for a in model["artifacts"]} == {"adapter", "merged"}
        download = b.get(model["artifacts"][0]["download_url"])
        assert download.status_code == 200 and download.content.endswith(ft.job_id.encode())
        # Only the model is shared: the job, its checkpoints and the checkpoint archive stay the owner's.
        assert b.get(f"/v1/fine_tuning/jobs/{ft.job_id}").status_code == 404
        assert b.get(f"/v1/artifacts/{ft.artifact_ids['checkpoint']}/content").status_code == 404
        assert b.get(f"/v1/fine_tuning/checkpoints/{ft.name}/permissions").status_code == 403  # not the owner's
        assert b.delete(f"/v1/models/{ft.name}").status_code == 403

        listing = client.get(f"/v1/fine_tuning/checkpoints/{ft.name}/permissions").json()
        assert_conforms("ListFineTuningCheckpointPermissionResponse", listing)
        assert [p["id"] for p in listing["data"]] == [permission["id"]]
        gone = client.delete(f"/v1/fine_tuning/checkpoints/{ft.name}/permissions/{permission['id']}")
        assert gone.status_code == 200
        assert_conforms("DeleteFineTuningCheckpointPermissionResponse", gone.json())
        assert b.get(f"/v1/models/{ft.name}").status_code == 404
        assert b.get(f"/v1/artifacts/{ft.artifact_ids['adapter']}/content").status_code == 404
        assert ft.name not in [m["id"] for m in b.get("/v1/models").json()["data"]]


def test_a_shared_checkpoint_gives_only_that_checkpoint(owner, make_team) -> None:  # type: ignore[no-untyped-def]
    client, ft, _ = owner
    other = make_team()
    r = client.post(f"/v1/fine_tuning/checkpoints/{ft.checkpoint}/permissions", json={"project_ids": [other.team_id]})
    assert r.status_code == 200, r.text
    with _client(other.key) as b:
        model = b.get(f"/v1/models/{ft.checkpoint}").json()
        assert [a["kind"] for a in model["artifacts"]] == ["checkpoint"]
        assert b.get(f"/v1/artifacts/{ft.artifact_ids['checkpoint']}/content").status_code == 200
        assert b.get(f"/v1/models/{ft.name}").status_code == 404
        assert b.get(f"/v1/artifacts/{ft.artifact_ids['adapter']}/content").status_code == 404


def test_bad_grants_are_refused(owner, make_team) -> None:  # type: ignore[no-untyped-def]
    client, ft, team = owner
    path = f"/v1/fine_tuning/checkpoints/{ft.name}/permissions"
    for project_ids in ([], ["team-nope"], [team.team_id]):
        r = client.post(path, json={"project_ids": project_ids})
        assert r.status_code == 400 and r.json()["error"]["param"] == "project_ids", (project_ids, r.text)
    unknown = client.post("/v1/fine_tuning/checkpoints/ft:nope:x::0123/permissions", json={"project_ids": []})
    assert unknown.status_code == 404
    stranger = make_team()
    with _client(stranger.key) as s:
        r = s.post(path, json={"project_ids": [stranger.team_id]})
        assert r.status_code == 404  # another team's model does not exist for it


def test_delete_model_removes_it_and_its_artifacts(owner, data_dir) -> None:  # type: ignore[no-untyped-def]
    client, ft, _ = owner
    assert ft.name in [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert len(list((data_dir / "store" / "artifacts" / ft.job_id).glob("*"))) == 3
    r = client.delete(f"/v1/models/{ft.name}")
    assert r.status_code == 200
    assert_conforms("DeleteModelResponse", r.json())
    assert r.json() == {"id": ft.name, "object": "model", "deleted": True}
    assert ft.name not in [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert client.get(f"/v1/models/{ft.name}").status_code == 404
    assert client.get(f"/v1/artifacts/{ft.artifact_ids['adapter']}/content").status_code == 404
    assert not list((data_dir / "store" / "artifacts" / ft.job_id).glob("*"))
    job = client.get(f"/v1/fine_tuning/jobs/{ft.job_id}").json()
    assert job["status"] == "succeeded" and job["fine_tuned_model"] == ft.name  # the job keeps its history
    assert client.delete(f"/v1/models/{ft.name}").status_code == 404
    assert client.delete(f"/v1/models/{TINY_MODEL}").status_code == 403


def test_checkpoint_names_are_ft_names_before_the_job_succeeds(make_team, tmp_path) -> None:  # type: ignore[no-untyped-def]
    team = make_team()
    ft = _make_fine_tune(team.team_id, team.name, tmp_path, succeeded=False)
    with _client(team.key) as client:
        page = client.get(f"/v1/fine_tuning/jobs/{ft.job_id}/checkpoints").json()
        assert_conforms("ListFineTuningJobCheckpointsResponse", page)
        assert [c["fine_tuned_model_checkpoint"] for c in page["data"]] == [ft.checkpoint]
        assert ft.checkpoint.startswith(f"ft:{TINY_MODEL}:{team.name}:shared:")
        model = client.get(f"/v1/models/{ft.checkpoint}")
        assert model.status_code == 200 and model.json()["id"] == ft.checkpoint
        assert client.get(f"/v1/models/{ft.name}").status_code == 404  # the fine-tune itself does not exist yet


def test_malformed_and_unsatisfiable_ranges_answer_openai_error_bodies(owner) -> None:  # type: ignore[no-untyped-def]
    from tests.contract.openai_spec import assert_conforms as conforms

    client, ft, _ = owner
    url = f"/v1/artifacts/{ft.artifact_ids['adapter']}/content"
    assert client.get(url, headers={"Range": "bytes=2-4"}).content == b"apt"
    for header in ("bytes=abc", "items=0-1", "bytes=1-2-3", "bytes=" + "9" * 30 + "-"):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 400, (header, r.status_code)
        conforms("ErrorResponse", r.json())
        assert r.json()["error"]["param"] == "Range"
    r = client.get(url, headers={"Range": "bytes=500-"})
    assert r.status_code == 416 and r.headers["content-range"].startswith("bytes */")
    conforms("ErrorResponse", r.json())
    # Several ranges are valid: a local file answers them as multipart/byteranges, a remote store whole.
    assert client.get(url, headers={"Range": "bytes=0-1, 3-4"}).status_code in (200, 206)
