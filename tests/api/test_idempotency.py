"""Idempotency-Key on POST /v1/files and POST /v1/fine_tuning/jobs: retries never make a second object."""

from __future__ import annotations

import threading

from tests.support.data import CHAT, TINY_MODEL, jsonl, upload


def _upload(api, key: str, content: bytes, name: str = "train.jsonl"):  # type: ignore[no-untyped-def]
    return api.post(
        "/v1/files",
        files={"file": (name, content)},
        data={"purpose": "fine-tune"},
        headers={"Idempotency-Key": key},
    )


def _job_body(file_id: str, **extra: object) -> dict[str, object]:
    return {"model": TINY_MODEL, "training_file": file_id, **extra}


def test_upload_retry_returns_the_first_file_and_stores_one(api, team, data_dir) -> None:  # type: ignore[no-untyped-def]
    first = _upload(api, "upload-1", jsonl(CHAT))
    assert first.status_code == 200, first.text
    again = _upload(api, "upload-1", jsonl(CHAT))
    assert again.status_code == 200 and again.json() == first.json()
    assert [f["id"] for f in api.get("/v1/files").json()["data"]] == [first.json()["id"]]
    assert [p.name for p in (data_dir / "store" / "files" / team.team_id).iterdir()] == [
        f"{first.json()['id']}.jsonl"
    ]
    assert list((data_dir / "store" / ".tmp").glob("*.jsonl")) == []  # the retry's temp copy is gone


def test_upload_same_key_different_content_or_name_is_409(api) -> None:  # type: ignore[no-untyped-def]
    assert _upload(api, "upload-2", jsonl(CHAT)).status_code == 200
    for content, name in ((jsonl(CHAT[:1]), "train.jsonl"), (jsonl(CHAT), "other.jsonl")):
        r = _upload(api, "upload-2", content, name)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["param"] == "Idempotency-Key"
        assert "Idempotency-Key" in r.json()["error"]["message"]
    assert len(api.get("/v1/files").json()["data"]) == 1


def test_job_retry_returns_the_original_job(api) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    body = _job_body(file_id, suffix="idem", hyperparameters={"n_epochs": 1})
    first = api.post("/v1/fine_tuning/jobs", json=body, headers={"Idempotency-Key": "job-1"})
    assert first.status_code == 200, first.text
    # The same body with its keys in another order is the same request.
    reordered = dict(reversed(list(body.items())))
    again = api.post("/v1/fine_tuning/jobs", json=reordered, headers={"Idempotency-Key": "job-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert [j["id"] for j in api.get("/v1/fine_tuning/jobs").json()["data"]] == [first.json()["id"]]

    changed = api.post(
        "/v1/fine_tuning/jobs", json={**body, "suffix": "other"}, headers={"Idempotency-Key": "job-1"}
    )
    assert changed.status_code == 409 and changed.json()["error"]["param"] == "Idempotency-Key"
    # Without a key, or with a new one, a second job is made as usual.
    assert api.post("/v1/fine_tuning/jobs", json=body, headers={"Idempotency-Key": "job-2"}).json()["id"] != (
        first.json()["id"]
    )
    assert len(api.get("/v1/fine_tuning/jobs").json()["data"]) == 2


def test_a_key_names_one_request_across_endpoints(api) -> None:  # type: ignore[no-untyped-def]
    file_id = _upload(api, "shared", jsonl(CHAT)).json()["id"]
    r = api.post("/v1/fine_tuning/jobs", json=_job_body(file_id), headers={"Idempotency-Key": "shared"})
    assert r.status_code == 409 and r.json()["error"]["param"] == "Idempotency-Key"


def test_keys_are_scoped_per_team(api, make_team) -> None:  # type: ignore[no-untyped-def]
    mine = _upload(api, "team-key", jsonl(CHAT)).json()["id"]
    other = make_team()
    r = api.post(
        "/v1/files",
        files={"file": ("train.jsonl", jsonl(CHAT))},
        data={"purpose": "fine-tune"},
        headers={"Idempotency-Key": "team-key", "Authorization": f"Bearer {other.key}"},
    )
    assert r.status_code == 200 and r.json()["id"] != mine  # the other team's own, new file


def test_a_failed_request_does_not_use_up_its_key(api) -> None:  # type: ignore[no-untyped-def]
    bad = _upload(api, "retry-after-fix", b"{not json\n")
    assert bad.status_code == 400
    file_id = _upload(api, "retry-after-fix", jsonl(CHAT)).json()["id"]
    r = api.post(
        "/v1/fine_tuning/jobs", json=_job_body(file_id, model="no-such-model"), headers={"Idempotency-Key": "job-fixed"}
    )
    assert r.status_code == 404  # unknown model
    r = api.post("/v1/fine_tuning/jobs", json=_job_body(file_id), headers={"Idempotency-Key": "job-fixed"})
    assert r.status_code == 200, r.text


def test_bad_keys_are_400(api) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    for key in ("x" * 256, "has space"):
        r = api.post("/v1/fine_tuning/jobs", json=_job_body(file_id), headers={"Idempotency-Key": key})
        assert r.status_code == 400 and r.json()["error"]["param"] == "Idempotency-Key", r.text


def test_concurrent_duplicates_make_one_job(api) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    body = _job_body(file_id, suffix="race")
    results: list[tuple[int, str]] = []
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        r = api.post("/v1/fine_tuning/jobs", json=body, headers={"Idempotency-Key": "race"})
        results.append((r.status_code, r.json().get("id", "")))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {status for status, _ in results} == {200}
    assert len({job_id for _, job_id in results}) == 1
    assert len(api.get("/v1/fine_tuning/jobs").json()["data"]) == 1


def test_a_duplicate_waits_for_the_first_request_to_finish(api, team) -> None:  # type: ignore[no-untyped-def]
    """Another API process holds the key mid-request; the duplicate waits, then goes ahead when that one fails."""
    import time

    from sqlalchemy import text

    from db.session import get_engine

    file_id = upload(api, jsonl(CHAT)).json()["id"]
    with get_engine().connect() as other:
        other.execute(
            text(
                "INSERT INTO idempotency_key (team_id, key, endpoint, request_hash) "
                "VALUES (:team, 'held', 'jobs', 'x')"
            ),
            {"team": team.team_id},
        )
        result: dict[str, object] = {}

        def submit() -> None:
            started = time.monotonic()
            r = api.post("/v1/fine_tuning/jobs", json=_job_body(file_id), headers={"Idempotency-Key": "held"})
            result.update(status=r.status_code, waited=time.monotonic() - started)

        thread = threading.Thread(target=submit)
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive()  # blocked on the key, not answered
        other.rollback()  # the first request failed: its claim vanishes
    thread.join(10)
    assert result["status"] == 200 and float(result["waited"]) >= 1.4  # type: ignore[arg-type]
    assert len(api.get("/v1/fine_tuning/jobs").json()["data"]) == 1
