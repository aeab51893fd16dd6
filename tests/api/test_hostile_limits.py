"""A hostile tenant's requests in-process: oversized bodies and metadata, bad stream cursors, /metrics without
its token, revoking keys, and event ids that say nothing about other teams (the dashboard's side of these is
in tests/e2e/test_dashboard_pages.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.data import CHAT, TINY_MODEL, jsonl, upload

MIB = 1 << 20


def _openai_error(r: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return dict(error)


def test_json_bodies_past_one_mib_get_413_declared_or_chunked(api) -> None:  # type: ignore[no-untyped-def]
    big = json.dumps({"model": TINY_MODEL, "training_file": "file-x", "suffix": "a" * MIB}).encode()
    declared = api.post("/v1/fine_tuning/jobs", content=big, headers={"content-type": "application/json"})
    assert _openai_error(declared, 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while it streams in
        for i in range(0, len(big), 64 << 10):
            yield big[i : i + (64 << 10)]

    chunked = api.post("/v1/webhooks", content=chunks(), headers={"content-type": "application/json"})
    assert _openai_error(chunked, 413)["type"] == "invalid_request_error"
    # Just under the cap is parsed as usual (and refused for its content, not its size).
    small = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": "f", "suffix": "a" * 1000})
    assert small.status_code == 400


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
    ],
    ids=["17-keys", "long-key", "long-value"],
)
def test_metadata_past_openais_limits_is_refused_naming_metadata(api, metadata) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    r = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id, "metadata": metadata})
    assert _openai_error(r, 400)["param"] == "metadata"


def test_metadata_at_the_limits_is_kept(api) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    r = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id, "metadata": metadata})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == metadata
    api.post(f"/v1/fine_tuning/jobs/{r.json()['id']}/cancel")


BAD_CURSORS = ["²", "Â²", "99999999999999999999999", "-5", "12a", "ftevent-"]  # "Â²": UTF-8 ² read as latin-1


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_bad_stream_cursors_are_400_before_streaming(api, cursor: str) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    job_id = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).json()["id"]
    path = f"/v1/fine_tuning/jobs/{job_id}/events/stream"
    by_header = api.get(path, headers={"Last-Event-ID": cursor.encode("latin-1")})
    assert _openai_error(by_header, 400)["param"] == "Last-Event-ID"
    by_query = api.get(path, params={"after": cursor})
    assert _openai_error(by_query, 400)["param"] == "after"
    api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")


def test_metrics_needs_its_token_or_an_explicit_dev_opt_in(api, override_settings) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/metrics").status_code == 403  # default: off (no token configured)
    override_settings(metrics_token="s3cret-scrape-token")
    assert api.get("/metrics").status_code == 401  # a team's API key is not the scrape token
    assert api.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"}).status_code == 200
    override_settings(metrics_token="", metrics_public="true")
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 200


def test_an_admin_lists_and_revokes_keys(api, make_team) -> None:  # type: ignore[no-untyped-def]
    admin, member = make_team(is_admin=True), make_team()
    as_admin = {"Authorization": f"Bearer {admin.key}"}
    second = api.post(f"/v1/admin/teams/{member.team_id}/keys", json={"name": "ci"}, headers=as_admin).json()
    assert api.get("/v1/files", headers={"Authorization": f"Bearer {member.key}"}).status_code == 200
    keys = api.get(f"/v1/admin/teams/{member.team_id}/keys", headers=as_admin).json()["data"]
    by_name = {k["name"]: k for k in keys}
    assert set(by_name) == {"test", "ci"} and by_name["ci"]["id"] == second["id"]
    assert by_name["test"]["last_used_at"] is not None and by_name["ci"]["last_used_at"] is None
    assert by_name["test"]["prefix"] == member.key[:8] and all(member.key not in json.dumps(k) for k in keys)
    assert all(k["revoked_at"] is None and k["created_at"] > 0 for k in keys)

    r = api.delete(f"/v1/admin/teams/{member.team_id}/keys/{by_name['test']['id']}", headers=as_admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert api.get("/v1/files", headers={"Authorization": f"Bearer {member.key}"}).status_code == 401
    assert api.get("/v1/files", headers={"Authorization": f"Bearer {second['key']}"}).status_code == 200
    assert api.delete(f"/v1/admin/teams/{member.team_id}/keys/key-nope", headers=as_admin).status_code == 404
    member_key = {"Authorization": f"Bearer {second['key']}"}
    assert api.get(f"/v1/admin/teams/{member.team_id}/keys", headers=member_key).status_code == 403


def test_event_ids_are_numbered_per_job_and_reveal_no_other_activity(api, make_team) -> None:  # type: ignore[no-untyped-def]
    from db.repositories import events
    from db.session import unit_of_work

    other = make_team()
    theirs = {"Authorization": f"Bearer {other.key}"}
    other_file = api.post("/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"},
                          headers=theirs).json()["id"]  # fmt: skip
    other_job = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": other_file},
                         headers=theirs).json()["id"]  # fmt: skip
    with unit_of_work() as session:  # the other team is busy: many events
        for i in range(25):
            events.add_event(session, other_job, f"step {i}")
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    job_id = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).json()["id"]
    with unit_of_work() as session:
        events.add_event(session, job_id, "mine")
    ids = [e["id"] for e in api.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]]
    numbers = sorted(int(i.removeprefix("ftevent-")) for i in ids)
    assert numbers == list(range(1, len(ids) + 1)) and all(isinstance(i, str) for i in ids)
    # The cursor pages by the same numbers.
    older = api.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"after": f"ftevent-{numbers[-1]}"})
    assert [int(e["id"].removeprefix("ftevent-")) for e in older.json()["data"]] == numbers[-2::-1]
    for job, headers in ((job_id, None), (other_job, theirs)):
        api.post(f"/v1/fine_tuning/jobs/{job}/cancel", headers=headers)
