"""A hostile tenant's requests in-process: oversized bodies and metadata, bad stream cursors, the pool's view
of other teams, /metrics without its token, revoking keys, and the dashboard's headers, sessions and limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.test_files import CHAT, jsonl, upload
from tests.conftest import TINY_MODEL

MIB = 1 << 20
TEMPLATES = Path(__file__).parents[2] / "api" / "dashboard" / "templates"


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


@pytest.fixture
def browser(service_urls: tuple[str, str]) -> Iterator[TestClient]:
    """A cookie-keeping client of the app, like a browser."""
    from api.app import create_app

    with TestClient(create_app(), base_url="https://dashboard.test", follow_redirects=False) as client:
        yield client


def _sign_in(browser: TestClient, key: str) -> str:
    r = browser.post("/login", data={"api_key": key, "next": "/jobs"})
    assert r.status_code == 303, r.text
    page = browser.get("/jobs")
    return page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_login_from_another_site_is_refused(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        r = browser.post("/login", data={"api_key": team.key}, headers=headers)
        assert r.status_code == 403 and "tunepool_session" not in r.cookies
    ok = browser.post("/login", data={"api_key": team.key}, headers={"origin": "https://dashboard.test"})
    assert ok.status_code == 303


def test_logout_ends_the_session_on_the_server(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    csrf = _sign_in(browser, team.key)
    copied = browser.cookies["tunepool_session"]
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    browser.cookies.set("tunepool_session", copied, "dashboard.test")  # a copy kept from before the logout
    assert browser.get("/jobs", headers={"accept": "text/html"}).status_code == 303  # back to sign-in


def test_revoking_the_key_ends_its_browser_sessions(browser: TestClient, api, team, make_team) -> None:  # type: ignore[no-untyped-def]
    _sign_in(browser, team.key)
    assert browser.get("/jobs").status_code == 200
    admin = make_team(is_admin=True)
    as_admin = {"Authorization": f"Bearer {admin.key}"}
    [key] = api.get(f"/v1/admin/teams/{team.team_id}/keys", headers=as_admin).json()["data"]
    assert api.delete(f"/v1/admin/teams/{team.team_id}/keys/{key['id']}", headers=as_admin).status_code == 200
    assert browser.get("/jobs", headers={"accept": "text/html"}).status_code == 303


def test_dashboard_writes_share_the_api_rate_limit(browser: TestClient, team, override_settings) -> None:  # type: ignore[no-untyped-def]
    override_settings(rate_limit_writes_per_second="1", rate_limit_write_burst="5")
    csrf = _sign_in(browser, team.key)
    codes = [
        browser.post("/jobs/ftjob-none/cancel", data={"csrf_token": csrf}).status_code for _ in range(8)
    ]  # fmt: skip
    assert codes[:5] == [404] * 5 and codes[5:] == [429] * 3
    r = browser.post("/jobs", json={"model": TINY_MODEL}, headers={"x-csrf-token": csrf})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_the_dashboard_stream_refuses_bad_cursors_too(browser: TestClient, api, team, cursor: str) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    job_id = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).json()["id"]
    _sign_in(browser, team.key)
    r = browser.get(f"/jobs/{job_id}/events/stream", headers={"Last-Event-ID": cursor.encode("latin-1")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "Last-Event-ID"
    r = browser.get(f"/jobs/{job_id}/events/stream", params={"after": cursor})
    assert r.status_code == 400 and r.json()["error"]["param"] == "after"
    api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")


def test_dashboard_pages_carry_security_headers_and_no_inline_script(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    for r in (browser.get("/login"), browser.get("/static/job.js")):
        csp = r.headers["content-security-policy"]
        assert (
            "script-src 'self'" in csp
            and "frame-ancestors 'none'" in csp
            and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
        )
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    # script-src 'self' would block inline script and handlers: there must be none to block.
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        inline = [m for m in re.findall(r"<script\b[^>]*>", text) if "src=" not in m and "application/json" not in m]
        assert not inline, (template.name, inline)
        assert not re.search(r"\son[a-z]+\s*=", text), template.name


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
