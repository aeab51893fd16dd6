"""Uploads: validation report, storage, team scoping."""

from __future__ import annotations

from tests.support.data import CHAT, jsonl, upload


def test_upload_valid_file_returns_openai_file_object(api) -> None:  # type: ignore[no-untyped-def]
    r = upload(api, jsonl(CHAT))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "file" and body["id"].startswith("file-")
    assert body["purpose"] == "fine-tune" and body["status"] == "processed"
    assert body["format"] == "chat" and body["line_count"] == 2 and body["bytes"] == len(jsonl(CHAT))
    assert api.get(f"/v1/files/{body['id']}/content").content == jsonl(CHAT)
    assert [f["id"] for f in api.get("/v1/files").json()["data"]] == [body["id"]]


def test_invalid_lines_are_reported_with_numbers_and_nothing_is_stored(api, data_dir) -> None:  # type: ignore[no-untyped-def]
    def stored() -> list:  # type: ignore[type-arg]
        return sorted(p for p in (data_dir / "store").rglob("*") if p.is_file())

    before = stored()
    bad = jsonl(CHAT) + b"{not json\n" + jsonl([{"messages": [{"role": "user", "content": "no answer"}]}])
    r = upload(api, bad)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "file"
    assert [p["line"] for p in err["lines"]] == [3, 4]
    assert "invalid JSON" in err["lines"][0]["reason"]
    assert "assistant" in err["lines"][1]["reason"]
    assert api.get("/v1/files").json()["data"] == []
    assert stored() == before


def test_empty_file_and_bad_purpose_are_rejected(api) -> None:  # type: ignore[no-untyped-def]
    r = upload(api, b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = upload(api, jsonl(CHAT), purpose="batch")
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"


def test_other_teams_files_are_invisible(api, make_team) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    other = make_team()
    headers = {"Authorization": f"Bearer {other.key}"}
    assert api.get(f"/v1/files/{file_id}", headers=headers).status_code == 404
    assert api.get(f"/v1/files/{file_id}/content", headers=headers).status_code == 404
    assert api.delete(f"/v1/files/{file_id}", headers=headers).status_code == 404
    assert api.get("/v1/files", headers=headers).json()["data"] == []


def test_requests_without_a_valid_key_get_401(api) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/v1/files", headers={"Authorization": ""}).status_code == 401
    r = api.get("/v1/files", headers={"Authorization": "Bearer tp-nope"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_delete_file(api) -> None:  # type: ignore[no-untyped-def]
    file_id = upload(api, jsonl(CHAT)).json()["id"]
    r = api.delete(f"/v1/files/{file_id}")
    assert r.json() == {"id": file_id, "object": "file", "deleted": True}
    assert api.get(f"/v1/files/{file_id}").status_code == 404
