"""The dashboard in Debian's headless Chromium against the real processes (uvicorn, dispatcher, worker)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.data import TINY_MODEL
from tests.support.waiting import wait_until

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[ui]' for the browser tests")
CHROMIUM = os.environ.get("TUNEPOOL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"What colour is fruit number {i}?"},
            {"role": "assistant", "content": ["red", "green", "yellow", "orange"][i % 4]},
        ]
    }
    for i in range(32)
]
JSONL = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: `make test` installs it (apt-get install chromium) when run as root")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, running_service: Any) -> Iterator[Any]:
    context = chromium.new_context(base_url=running_service.base_url, viewport={"width": 1360, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots of every page land in the test output (or TUNEPOOL_SCREENSHOT_DIR), to look at."""
    if wanted := os.environ.get("TUNEPOOL_SCREENSHOT_DIR"):
        Path(wanted).mkdir(parents=True, exist_ok=True)
        return Path(wanted)
    return tmp_path_factory.mktemp("dashboard-screenshots")


def sign_in(page: Any, key: str) -> None:
    page.goto("/jobs")
    assert page.url.endswith("/login?next=/jobs")  # pages redirect to sign-in
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")


def points(page: Any, chart: str = "chart-loss") -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


# The pages' Content-Security-Policy forbids eval, so a test waits by reading the DOM from Python (Playwright's
# own selectors), not with page.wait_for_function's evaluated strings.
def wait_points_above(page: Any, n: int, timeout_ms: int) -> None:
    wait_until(lambda: points(page) > n, timeout_ms / 1000, interval=0.25, message=f"chart stayed at {n} points")


def wait_status_badge(page: Any, status: str, timeout_ms: int) -> None:
    badge = page.locator("#status-badge .badge")
    wait_until(lambda: badge.text_content() == status, timeout_ms / 1000, interval=0.25, message=f"never {status}")


def test_sign_in_upload_train_watch_and_download(page: Any, team: Any, shots: Path, tmp_path: Path) -> None:
    page.goto("/login")
    page.fill("input[name=api_key]", "tp-wrong")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text(".error")
    sign_in(page, team.key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "tunepool_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    assert team.key not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: page scripts cannot read the session

    page.click("text=New job")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(JSONL[:200].rsplit(b"\n", 1)[0] + b"\n{not json\n")
    page.set_input_files("#upload-form input[type=file]", str(bad))
    page.click("#upload-form button")
    page.wait_for_selector("#upload-report table.report")
    assert page.inner_text("#upload-report table.report td.mono") == "2"  # the line at fault, by number
    good = tmp_path / "train.jsonl"
    good.write_bytes(JSONL)
    page.set_input_files("#upload-form input[type=file]", str(good))
    page.click("#upload-form button")
    page.wait_for_selector("#upload-report p.ok")
    assert "32 chat examples" in page.inner_text("#upload-report")
    assert page.input_value("select[name=training_file]").startswith("file-")

    page.select_option("select[name=model]", TINY_MODEL)
    page.select_option("select[name='quantization.mode']", "none")
    page.fill("input[name='training.max_steps']", "30")
    page.fill("input[name='training.max_seq_length']", "64")
    page.fill("input[name='hyperparameters.batch_size']", "2")
    page.fill("input[name='lora.r']", "0")  # out of range: the API's 400 shows under the field
    page.uncheck("input[value=merged]")
    page.click("#create-button")
    page.wait_for_selector(".field.bad[data-param='lora.r']")
    assert "greater than or equal to 1" in page.inner_text("[data-param='lora.r'] .msg")
    page.screenshot(path=str(shots / "new-job.png"), full_page=True)
    page.fill("input[name='lora.r']", "8")
    page.click("#create-button")
    page.wait_for_url("**/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]

    # The loss chart grows while the job runs, without a page reload.
    page.wait_for_selector("#live-mode[data-mode]", state="attached")
    mode = page.get_attribute("#live-mode", "data-mode")
    seen: list[int] = []

    def finished() -> bool:
        """Sample the chart while the job runs; true once the job finished."""
        status = page.inner_text("#status-badge .badge")
        if status == "running" and points(page) and (not seen or points(page) > seen[-1]):
            seen.append(points(page))
            if len(seen) == 3:
                page.screenshot(path=str(shots / "job-running.png"), full_page=True)
        return status in ("succeeded", "failed", "cancelled")

    wait_until(finished, 300, interval=0.05, message=lambda: f"job still running; chart points seen: {seen}")
    assert len(seen) >= 2 and seen == sorted(seen), f"chart points seen while running: {seen} ({mode})"
    page.wait_for_selector("tr[data-kind=adapter]", timeout=120_000)  # the page reloads once finished
    assert page.inner_text("#status-badge .badge") == "succeeded"
    assert points(page) >= 30 and points(page, "chart-grad") >= 30 and points(page, "chart-lr") >= 30
    page.screenshot(path=str(shots / "job-succeeded.png"), full_page=True)
    page.screenshot(path=str(shots / "job-top.png"))

    sha = page.get_attribute("tr[data-kind=adapter] .sha", "title")
    with page.expect_download() as download:
        page.click("tr[data-kind=adapter] a.button")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha
    assert saved.name.endswith(".tar")

    page.goto("/jobs?status=succeeded")
    assert page.locator(f"tr[data-job='{job_id}'] .badge").inner_text() == "succeeded"
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)
    if os.environ.get("TUNEPOOL_DOCS_SCREENSHOT"):
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shots / "job-top.png", DOCS_SHOT)
    print(f"screenshots: {shots}; chart points seen while running: {seen}; live mode: {mode}")


def test_cancel_a_running_job_and_cross_team_isolation(
    page: Any, running_service: Any, team: Any, make_team: Any, shots: Path
) -> None:
    api = httpx.Client(base_url=running_service.base_url, headers={"Authorization": f"Bearer {team.key}"})
    file_id = api.post("/v1/files", files={"file": ("t.jsonl", JSONL)}, data={"purpose": "fine-tune"}).json()["id"]
    long_job = {"model": TINY_MODEL, "training_file": file_id, "quantization": "none", "training": {"max_steps": 5000}}
    job_id = api.post("/v1/fine_tuning/jobs", json=long_job).json()["id"]

    sign_in(page, team.key)
    page.goto(f"/jobs/{job_id}")
    wait_status_badge(page, "running", 120_000)
    wait_points_above(page, 0, 60_000)
    page.goto(f"/jobs/{job_id}?live=poll")  # the fallback where there is no stream: polling every 2 s
    assert page.get_attribute("#live-mode", "data-mode") == "poll"
    wait_points_above(page, points(page), 60_000)
    page.goto(f"/jobs/{job_id}")
    page.click("#pause-button")
    page.wait_for_selector("#resume-button", timeout=120_000)  # paused: the page swaps the buttons
    assert page.inner_text("#status-badge .badge") == "paused"
    paused_at = points(page)
    page.screenshot(path=str(shots / "job-paused.png"), full_page=True)
    page.click("#resume-button")
    page.wait_for_selector("#pause-button")
    wait_status_badge(page, "running", 120_000)  # queued again, then claimed: training continues
    wait_points_above(page, paused_at, 120_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-button")
    wait_status_badge(page, "cancelled", 120_000)
    assert api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "cancelled"
    page.wait_for_selector("#cancel-button", state="detached")  # reloaded: no cancel on a finished job
    page.screenshot(path=str(shots / "job-cancelled.png"), full_page=True)

    other = make_team()
    other_api = httpx.Client(base_url=running_service.base_url, headers={"Authorization": f"Bearer {other.key}"})
    other_file = other_api.post(
        "/v1/files", files={"file": ("t.jsonl", JSONL)}, data={"purpose": "fine-tune"}
    ).json()["id"]
    foreign = other_api.post(
        "/v1/fine_tuning/jobs", json={**long_job, "training_file": other_file, "training": {"max_steps": 1}}
    ).json()["id"]
    response = page.goto(f"/jobs/{foreign}")
    assert response.status == 404 and "Not found" in page.inner_text("h1")
    page.screenshot(path=str(shots / "not-found.png"))
    page.goto("/jobs")
    assert page.locator(f"tr[data-job='{foreign}']").count() == 0
    assert page.locator(f"tr[data-job='{job_id}']").count() == 1

    page.goto("/pool")
    assert page.locator("h1").inner_text() == "GPU pool"
    assert "worker-1" in page.inner_text("#pool-workers")
    assert foreign not in page.content()  # another team's job is never named
    assert "Running jobs" in page.inner_text("#quota")
    page.screenshot(path=str(shots / "pool.png"), full_page=True)
    page.click("text=Sign out")
    page.wait_for_url("**/login")
    page.goto(f"/jobs/{job_id}")
    assert "/login" in page.url
