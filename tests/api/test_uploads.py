"""Resumable uploads (`/v1/uploads`) and the files list's pagination, checked against OpenAI's schemas."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from tests.contract.openai_spec import assert_conforms

ROWS = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(30)
]
BODY = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def _create(api, size: int = len(BODY), **extra):  # type: ignore[no-untyped-def]
    body = {"filename": "big.jsonl", "purpose": "fine-tune", "bytes": size, "mime_type": "application/jsonl"}
    return api.post("/v1/uploads", json=body | extra)


def _part(api, upload_id: str, data: bytes):  # type: ignore[no-untyped-def]
    return api.post(f"/v1/uploads/{upload_id}/parts", files={"data": ("blob", data)})


def _stored(data_dir, upload_id: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    return [p for p in (data_dir / "store").rglob("*") if p.is_file() and upload_id in str(p)]


def test_three_parts_sent_out_of_order_complete_into_one_validated_file(api, data_dir) -> None:  # type: ignore[no-untyped-def]
    r = _create(api)
    assert r.status_code == 200, r.text
    upload = r.json()
    assert_conforms("Upload", upload)
    assert upload["status"] == "pending" and upload["expires_at"] > upload["created_at"]
    thirds = [BODY[: len(BODY) // 3], BODY[len(BODY) // 3 : 2 * len(BODY) // 3], BODY[2 * len(BODY) // 3 :]]
    ids = {}
    for index in (2, 0, 1):  # parts may arrive in any order; `complete` names the order
        part = _part(api, upload["id"], thirds[index])
        assert part.status_code == 200, part.text
        assert_conforms("UploadPart", part.json())
        ids[index] = part.json()["id"]
    done = api.post(
        f"/v1/uploads/{upload['id']}/complete",
        json={"part_ids": [ids[0], ids[1], ids[2]], "md5": hashlib.md5(BODY).hexdigest()},
    )
    assert done.status_code == 200, done.text
    assert_conforms("Upload", done.json())
    assert done.json()["status"] == "completed"
    file = done.json()["file"]
    assert_conforms("OpenAIFile", file)
    assert file["bytes"] == len(BODY) and file["line_count"] == 30 and file["format"] == "chat"
    assert api.get(f"/v1/files/{file['id']}/content").content == BODY
    assert _stored(data_dir, upload["id"]) == []  # the parts are gone once the file exists
    again = _part(api, upload["id"], b"x")
    assert again.status_code == 400 and "completed" in again.json()["error"]["message"]


def test_completed_upload_is_validated_like_any_file(api, data_dir) -> None:  # type: ignore[no-untyped-def]
    bad = BODY + b"{not json\n"
    upload = _create(api, size=len(bad)).json()
    part = _part(api, upload["id"], bad).json()
    r = api.post(f"/v1/uploads/{upload['id']}/complete", json={"part_ids": [part["id"]]})
    assert r.status_code == 400
    assert r.json()["error"]["lines"][0]["line"] == 31
    assert _part(api, upload["id"], b"").status_code == 400  # still pending: it can be cancelled or retried


def test_wrong_sizes_orders_and_checksums_are_refused(api) -> None:  # type: ignore[no-untyped-def]
    upload = _create(api, size=10).json()
    too_much = _part(api, upload["id"], b"x" * 11)
    assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "data"
    part = _part(api, upload["id"], b'{"text":"')
    short = api.post(f"/v1/uploads/{upload['id']}/complete", json={"part_ids": [part.json()["id"]]})
    assert short.status_code == 400 and short.json()["error"]["param"] == "part_ids"
    upload2 = _create(api, size=len(BODY)).json()
    part2 = _part(api, upload2["id"], BODY).json()
    twice = api.post(f"/v1/uploads/{upload2['id']}/complete", json={"part_ids": [part2["id"], part2["id"]]})
    assert twice.status_code == 400 and twice.json()["error"]["param"] == "part_ids"
    foreign = api.post(f"/v1/uploads/{upload2['id']}/complete", json={"part_ids": [part.json()["id"]]})
    assert foreign.status_code == 400
    wrong_md5 = api.post(f"/v1/uploads/{upload2['id']}/complete", json={"part_ids": [part2["id"]], "md5": "0" * 32})
    assert wrong_md5.status_code == 400 and wrong_md5.json()["error"]["param"] == "md5"
    for field, value in (("mime_type", "image/png"), ("purpose", "assistants"), ("bytes", 0)):
        r = _create(api, **{field: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
    unknown = _create(api, expires_after={"anchor": "created_at", "seconds": 3600})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "expires_after"


def test_cancel_removes_the_parts_and_other_teams_see_nothing(api, make_team, data_dir) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app

    upload = _create(api).json()
    _part(api, upload["id"], BODY[:100])
    assert len(_stored(data_dir, upload["id"])) == 1
    other = make_team()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {other.key}"}) as stranger:
        assert _part(stranger, upload["id"], b"x").status_code == 404
        assert stranger.post(f"/v1/uploads/{upload['id']}/cancel").status_code == 404
    r = api.post(f"/v1/uploads/{upload['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_conforms("Upload", r.json())
    assert _stored(data_dir, upload["id"]) == []
    assert _part(api, upload["id"], b"x").status_code == 400


def test_expired_upload_reads_expired_and_the_sweep_removes_its_parts(api, data_dir) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from core.storage import configured_store
    from db.models import Upload
    from db.session import unit_of_work
    from worker.uploads_sweeper import expire_uploads

    upload = _create(api).json()
    _part(api, upload["id"], BODY[:50])
    with unit_of_work() as session:
        session.get(Upload, upload["id"]).expires_at = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[union-attr]
    refused = _part(api, upload["id"], b"x")
    assert refused.status_code == 400 and "expired" in refused.json()["error"]["message"]
    assert expire_uploads(configured_store(get_settings())) >= 1
    assert _stored(data_dir, upload["id"]) == []
    with unit_of_work() as session:
        assert session.get(Upload, upload["id"]).status == "expired"  # type: ignore[union-attr]


def test_files_list_paginates_with_limit_after_and_order(api) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(5):
        r = api.post("/v1/files", files={"file": (f"f{i}.jsonl", BODY)}, data={"purpose": "fine-tune"})
        ids.append(r.json()["id"])
    page = api.get("/v1/files", params={"limit": 2}).json()
    assert_conforms("ListFilesResponse", page)
    assert [f["id"] for f in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    assert page["first_id"] == ids[4] and page["last_id"] == ids[3]
    rest = api.get("/v1/files", params={"limit": 10, "after": page["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    ascending = api.get("/v1/files", params={"order": "asc", "limit": 3}).json()
    assert [f["id"] for f in ascending["data"]] == ids[:3]
    assert api.get("/v1/files", params={"after": "file-nope"}).status_code == 400
    assert api.get("/v1/files", params={"limit": 0}).status_code == 400
    assert api.get("/v1/files", params={"order": "sideways"}).status_code == 400
