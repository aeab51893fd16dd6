"""`tunepool admin keys` and `tunepool admin revoke-key` against the real database."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def test_admin_lists_and_revokes_a_key(api, team) -> None:  # type: ignore[no-untyped-def]
    from api.services import teams
    from db.session import unit_of_work

    assert api.get("/v1/files").status_code == 200
    with unit_of_work() as session:
        [key] = teams.list_api_keys(session, team.team_id)
    runner = CliRunner()
    listed = runner.invoke(app, ["admin", "keys", team.name, "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert row["id"] == key.id and row["prefix"] == team.key[:8] and row["last_used_at"] and not row["revoked_at"]
    assert team.key not in listed.output
    assert runner.invoke(app, ["admin", "keys", team.name]).exit_code == 0  # the table

    revoked = runner.invoke(app, ["admin", "revoke-key", team.team_id, key.id])
    assert revoked.exit_code == 0 and f"revoked {key.id}" in revoked.output
    assert api.get("/v1/files").status_code == 401
    missing = runner.invoke(app, ["admin", "revoke-key", team.team_id, "key-nope"])
    assert missing.exit_code != 0
