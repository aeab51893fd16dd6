"""Dashboard pages in-process (real DB, no browser): sign-in cookie, CSRF, isolation, error pages."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.data import CHAT, TINY_MODEL, jsonl, upload

TEMPLATES = Path(__file__).parents[2] / "api" / "dashboard" / "templates"
BAD_CURSORS = ["²", "Â²", "99999999999999999999999", "-5", "12a", "ftevent-"]  # "Â²": UTF-8 ² read as latin-1
ROWS = "".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(8)).encode()


@pytest.fixture
def browser(service_urls: tuple[str, str]) -> Iterator[TestClient]:
    """A cookie-keeping client of the app, like a browser (over HTTPS: the cookie is Secure)."""
    from api.app import create_app

    with TestClient(create_app(), base_url="https://dashboard.test", follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str) -> str:
    """Sign in and return the page's CSRF token."""
    r = client.post("/login", data={"api_key": key, "next": "/jobs"})
    assert r.status_code == 303 and r.headers["location"] == "/jobs"
    page = client.get("/jobs", headers={"accept": "text/html"})
    assert page.status_code == 200
    return page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def make_job(api: httpx.Client, **training: object) -> str:
    file_id = api.post("/v1/files", files={"file": ("t.jsonl", ROWS)}, data={"purpose": "fine-tune"}).json()["id"]
    body = {"model": TINY_MODEL, "training_file": file_id, "quantization": "none", "training": training}
    r = api.post("/v1/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_pages_need_a_session_and_a_valid_key(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    r = browser.get("/jobs", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/jobs"
    assert browser.get("/").headers["location"] == "/login"
    bad = browser.post("/login", data={"api_key": "tp-not-a-key"})
    assert bad.status_code == 401 and "not valid" in bad.text and "tunepool_session" not in bad.cookies

    ok = browser.post("/login", data={"api_key": team.key, "next": "//evil.example/x"})
    assert ok.headers["location"] == "/jobs"  # no open redirect
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    assert team.key not in ok.headers["set-cookie"]  # the key itself never reaches the cookie
    assert team.name in browser.get("/jobs").text


def test_tampered_or_logged_out_cookie_is_refused(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(browser, team.key)
    token = browser.cookies["tunepool_session"]
    browser.cookies.clear()
    browser.cookies.set("tunepool_session", token[:-2] + ("00" if token[-2:] != "00" else "11"), "dashboard.test")
    assert browser.get("/jobs", headers={"accept": "text/html"}).status_code == 303
    browser.cookies.clear()
    browser.cookies.set("tunepool_session", token, "dashboard.test")
    assert browser.get("/jobs").status_code == 200
    r = browser.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert 'tunepool_session=""' in r.headers["set-cookie"] or "max-age=0" in r.headers["set-cookie"].lower()


def test_write_actions_need_the_csrf_token(browser: TestClient, api: httpx.Client, team) -> None:  # type: ignore[no-untyped-def]
    job_id = make_job(api, max_steps=5)
    csrf = sign_in(browser, team.key)
    assert browser.post(f"/jobs/{job_id}/cancel", data={}).status_code == 403
    assert browser.post(f"/jobs/{job_id}/cancel", data={"csrf_token": "forged"}).status_code == 403
    cross = browser.post(
        f"/jobs/{job_id}/cancel", data={"csrf_token": csrf}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    upload = browser.post("/files", files={"file": ("t.jsonl", ROWS)})
    assert upload.status_code == 403
    assert api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] != "cancelled"

    r = browser.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job_id}"
    assert api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "cancelled"
    again = browser.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf})
    assert again.headers["location"] == f"/jobs/{job_id}"  # the refusal shows as a notice, once
    assert "already cancelled" in browser.get(again.headers["location"]).text
    assert "already cancelled" not in browser.get(again.headers["location"]).text


def test_create_job_reports_the_apis_400_per_field(browser: TestClient, api: httpx.Client, team) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(browser, team.key)
    up = browser.post("/files", files={"file": ("t.jsonl", ROWS)}, headers={"x-csrf-token": csrf})
    assert up.status_code == 200 and up.json()["line_count"] == 8
    bad_file = browser.post(
        "/files", files={"file": ("bad.jsonl", ROWS + b"{oops\n")}, headers={"x-csrf-token": csrf}
    )
    assert bad_file.status_code == 400 and bad_file.json()["error"]["lines"][0]["line"] == 9

    body = {"model": TINY_MODEL, "training_file": up.json()["id"], "lora": {"r": 0, "dropout": 2}}
    r = browser.post("/jobs", json=body, headers={"x-csrf-token": csrf})
    assert r.status_code == 400
    params = {d["param"] for d in r.json()["error"]["details"]}
    assert params == {"lora.r", "lora.dropout"}
    r = browser.post("/jobs", json={**body, "model": "nope", "lora": {}}, headers={"x-csrf-token": csrf})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = browser.post("/jobs", json={**body, "lora": {"r": 4}}, headers={"x-csrf-token": csrf})
    assert r.status_code == 201 and r.json()["url"] == f"/jobs/{r.json()['id']}"
    page = browser.get(r.json()["url"])
    assert page.status_code == 200 and r.json()["id"] in page.text and "<td>r</td>" in page.text


def test_another_teams_job_is_not_found(browser: TestClient, make_team) -> None:  # type: ignore[no-untyped-def]
    from api.app import create_app

    other = make_team()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {other.key}"}) as other_api:
        foreign = make_job(other_api, max_steps=3)
    csrf = sign_in(browser, make_team().key)
    page = browser.get(f"/jobs/{foreign}")
    assert page.status_code == 404 and "Not found" in page.text
    assert browser.get(f"/jobs/{foreign}/live.json").status_code == 404
    assert browser.get(f"/jobs/{foreign}/events/stream").status_code == 404
    assert browser.post(f"/jobs/{foreign}/cancel", data={"csrf_token": csrf}).status_code == 404
    assert foreign not in browser.get("/jobs").text


def test_jobs_list_filters_by_status_and_pages(browser: TestClient, api: httpx.Client, team) -> None:  # type: ignore[no-untyped-def]
    ids = [make_job(api, max_steps=2) for _ in range(22)]
    csrf = sign_in(browser, team.key)
    browser.post(f"/jobs/{ids[0]}/cancel", data={"csrf_token": csrf})
    first = browser.get("/jobs").text
    assert first.count('data-job="') == 20 and ids[-1] in first and "Older" in first
    cursor = first.split("after=", 1)[1].split('"', 1)[0]
    second = browser.get(f"/jobs?after={cursor}").text
    assert second.count('data-job="') == 2 and ids[0] in second
    cancelled = browser.get("/jobs?status=cancelled").text
    assert cancelled.count('data-job="') == 1 and ids[0] in cancelled
    assert browser.get("/pool").status_code == 200
    assert browser.get("/jobs/new").status_code == 200


def test_session_secret_is_generated_once_and_short_ones_are_refused(
    browser: TestClient, team, data_dir  # type: ignore[no-untyped-def]
) -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    sign_in(browser, team.key)
    secret = data_dir / "session_secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 32
    with pytest.raises(ValidationError, match="session_secret"):
        Settings(session_secret="changeme")


def test_pool_page_shows_workers_and_quota_and_pause_is_wired(browser: TestClient, api: httpx.Client, team) -> None:  # type: ignore[no-untyped-def]
    from db.repositories import workers
    from db.session import unit_of_work

    worker_id = f"page-{secrets.token_hex(3)}"
    with unit_of_work() as session:
        workers.heartbeat(
            session,
            worker_id,
            hostname="page-host",
            device="cuda",
            gpu_name="NVIDIA L4",
            gpu_memory_total=24 * 10**9,
            gpu_memory_free=20 * 10**9,
        )
    try:
        csrf = sign_in(browser, team.key)
        page = browser.get("/pool").text
        workers_card = page.split('id="pool-workers"', 1)[1].split("</section>", 1)[0]
        assert worker_id in workers_card and "NVIDIA L4" in workers_card and "4.0 / 24.0 GB" in workers_card
        quota_card = page.split('id="quota"', 1)[1].split("</section>", 1)[0]
        assert "Running jobs" in quota_card and "unlimited" in quota_card
    finally:
        with unit_of_work() as session:
            workers.remove_worker(session, worker_id)
    job_id = make_job(api, max_steps=2)
    assert api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    r = browser.post(f"/jobs/{job_id}/pause", data={"csrf_token": csrf})  # the service refuses, as a notice
    assert r.status_code == 303
    assert f"job {job_id} is cancelled; only queued or running jobs pause" in browser.get(f"/jobs/{job_id}").text
def test_login_from_another_site_is_refused(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        r = browser.post("/login", data={"api_key": team.key}, headers=headers)
        assert r.status_code == 403 and "tunepool_session" not in r.cookies
    ok = browser.post("/login", data={"api_key": team.key}, headers={"origin": "https://dashboard.test"})
    assert ok.status_code == 303


def test_logout_ends_the_session_on_the_server(browser: TestClient, team) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(browser, team.key)
    copied = browser.cookies["tunepool_session"]
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    browser.cookies.set("tunepool_session", copied, "dashboard.test")  # a copy kept from before the logout
    assert browser.get("/jobs", headers={"accept": "text/html"}).status_code == 303  # back to sign-in


def test_revoking_the_key_ends_its_browser_sessions(browser: TestClient, api, team, make_team) -> None:  # type: ignore[no-untyped-def]
    sign_in(browser, team.key)
    assert browser.get("/jobs").status_code == 200
    admin = make_team(is_admin=True)
    as_admin = {"Authorization": f"Bearer {admin.key}"}
    [key] = api.get(f"/v1/admin/teams/{team.team_id}/keys", headers=as_admin).json()["data"]
    assert api.delete(f"/v1/admin/teams/{team.team_id}/keys/{key['id']}", headers=as_admin).status_code == 200
    assert browser.get("/jobs", headers={"accept": "text/html"}).status_code == 303


def test_dashboard_writes_share_the_api_rate_limit(browser: TestClient, team, override_settings) -> None:  # type: ignore[no-untyped-def]
    override_settings(rate_limit_writes_per_second="1", rate_limit_write_burst="5")
    csrf = sign_in(browser, team.key)
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
    sign_in(browser, team.key)
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
