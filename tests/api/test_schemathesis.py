"""schemathesis against the service's own OpenAPI schema, with a real key: no 5xx, no schema violations, and
no status code (or error body) that the document does not declare."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from cli import processes
from tests.servers import free_port

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
# Bounded so the whole module stays within about a minute on two cores.
EXAMPLES_PER_OPERATION = 15
STATEFUL_SCENARIOS = 40

# The schema the app serves at /openapi.json, built without a database. Live streams never end by design
# (their replay is the same code as GET .../events), so they are left out.
SEEN: Counter[str] = Counter()  # status classes answered, printed at the end (run with -s to see them)
schema = schemathesis.openapi.from_dict(create_app().openapi()).exclude(path_regex=r"/stream$")


@pytest.fixture(scope="module")
def server_url(service_urls, data_dir) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real uvicorn API process, without a write rate limit: hundreds of writes a second are the point."""
    db_url, redis_url = service_urls
    env = processes.service_env(db_url, redis_url, data_dir, TUNEPOOL_RATE_LIMIT_WRITES_PER_SECOND="0")
    port = free_port()
    api = processes.start_api(env, data_dir / "log-fuzz", port=port)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api)
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop([api])


@pytest.fixture(scope="module")
def auth_headers(service_urls) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """An admin key, so the admin operations are fuzzed past their 403 too."""
    import secrets

    from api.services import teams
    from db.session import unit_of_work

    with unit_of_work() as session:
        team = teams.create_team(session, f"fuzz-{secrets.token_hex(3)}", is_admin=True)
        _, key = teams.create_api_key(session, team.id, "fuzz")
    return {"Authorization": f"Bearer {key}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_schema(case, server_url, auth_headers) -> None:  # type: ignore[no-untyped-def]
    response = case.call_and_validate(base_url=server_url, headers=auth_headers, checks=CHECKS)
    SEEN[f"{case.method} {case.path} {response.status_code}"] += 1


def test_stateful_workflows_answer_within_the_schema(server_url, auth_headers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """schemathesis's own stateful phase: links it infers chain calls (upload → get/download/delete, ...)."""
    import subprocess
    import sys

    import httpx

    from tests.support.data import CHAT, TINY_MODEL, jsonl

    # Real objects for the links to start from: a valid file and a job using it.
    with httpx.Client(base_url=server_url, headers=auth_headers) as http:
        file_id = http.post(
            "/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"}
        ).json()["id"]
        assert http.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).is_success
    (tmp_path / "schema.json").write_text(json.dumps(create_app().openapi()))
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", str(tmp_path / "schema.json"),
            "--url", server_url, "--phases", "stateful", "--checks", ",".join(c.__name__ for c in CHECKS),
            "--max-examples", str(STATEFUL_SCENARIOS), "--exclude-path-regex", "/stream$",
            "-H", f"Authorization: {auth_headers['Authorization']}", "--seed", "1", "--no-color",
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_report_fuzz_counts() -> None:
    """Not a check: prints how many examples ran and what they were answered, for the record."""
    by_status = Counter(key.rsplit(" ", 1)[1] for key in SEEN.elements())
    print(f"\nschemathesis: {sum(SEEN.values())} examples, by status {dict(sorted(by_status.items()))}")
    for key, n in sorted(SEEN.items()):
        print(f"  {n:4d}  {key}")
