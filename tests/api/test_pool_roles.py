"""Roles: every endpoint that takes an id answers 404 for another team's object; admin endpoints need admin."""

from __future__ import annotations

import re

from tests.api.pool_helpers import _file, auth, submit

ID_PARAM = re.compile(r"\{(\w+)\}")


def test_every_endpoint_hides_other_teams_objects(api, make_team, override_settings) -> None:  # type: ignore[no-untyped-def]
    from core.ids import new_id
    from db.models import Artifact
    from db.repositories import artifacts
    from db.session import unit_of_work

    owner, intruder, admin = make_team(), make_team(), make_team(is_admin=True)
    job = submit(api, owner)
    with unit_of_work() as session:
        art = artifacts.add_artifact(
            session,
            Artifact(
                id=new_id("art"),
                job_id=job["id"],
                team_id=owner.team_id,
                kind="adapter",
                filename="adapter.tar",
                storage_key=f"artifacts/{owner.team_id}/{job['id']}/adapter.tar",
                bytes=1,
                sha256="0" * 64,
            ),
        )
    ids = {"file_id": _file(api, owner), "job_id": job["id"], "artifact_id": art.id, "team_id": owner.team_id}
    override_settings(webhook_allowed_hosts="127.0.0.1")  # loopback webhooks need the admin's allow-list
    hook = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth(owner))
    assert hook.status_code == 200, hook.text
    ids["webhook_id"] = hook.json()["id"]
    checked = 0
    for path, operations in api.app.openapi()["paths"].items():
        params = ID_PARAM.findall(path)
        if not params or not all(p in ids for p in params):
            continue
        url = ID_PARAM.sub(lambda m: ids[m.group(1)], path)
        for method in operations:
            r = api.request(method.upper(), url, headers=auth(intruder), json={} if method in ("put", "post") else None)
            expected = 403 if path.startswith("/v1/admin/") else 404
            assert r.status_code == expected, (method, path, r.status_code, r.text)
            if expected == 403:  # an admin reaches it
                ok = api.request(method.upper(), url, headers=auth(admin), json={} if method != "get" else None)
                assert ok.status_code < 400, (method, path, ok.text)
            checked += 1
    assert checked >= 15, checked
    # The owner still sees everything (nothing above was deleted or cancelled by the intruder).
    assert api.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=auth(owner)).json()["status"] == "validating_files"
    assert api.get(f"/v1/files/{ids['file_id']}", headers=auth(owner)).status_code == 200
