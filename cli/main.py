"""The `tunepool` command: `up` runs the service; the other commands are a thin client of its REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.artifacts import artifacts_app
from cli.files import files_app
from cli.jobs import jobs_app
from cli.output import JsonFlag, console, emit

app = typer.Typer(help="tunepool: self-hosted LoRA/QLoRA fine-tuning.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Teams and API keys (run on the server; talks to its database).", no_args_is_help=True
)
for sub, name in (
    (files_app, "files"),
    (jobs_app, "jobs"),
    (artifacts_app, "artifacts"),
    (admin_app, "admin"),
):
    app.add_typer(sub, name=name)


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Embedded servers, models and artifacts.")] = Path("var"),
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (one per GPU).")] = 1,
    smollm2: Annotated[bool, typer.Option(help="Fetch and register SmolLM2-135M-Instruct.")] = True,
    pg_port: Annotated[int, typer.Option(help="Embedded Postgres port (without DATABASE_URL).")] = 54329,
    redis_port: Annotated[int, typer.Option(help="Embedded Redis port (without REDIS_URL).")] = 63790,
) -> None:
    """Start the API, dispatcher and workers (and embedded Postgres/Redis when none is configured)."""
    from cli.server import up as run_up

    run_up(data_dir, host, port, workers, smollm2, pg_port, redis_port)


@admin_app.command("create-team")
def admin_create_team(name: str, admin: bool = False) -> None:
    """Create a team and print its first API key."""
    from api.services import teams
    from db.session import unit_of_work

    with unit_of_work() as session:
        team = teams.create_team(session, name, is_admin=admin)
        _, key = teams.create_api_key(session, team.id, "initial")
    console.print(f"team {team.id} ({name})\nAPI key (shown once): [bold]{key}[/]")


@admin_app.command("create-key")
def admin_create_key(team: str, name: str = "") -> None:
    """Create another API key for a team (by id or name)."""
    from api.services import teams
    from db.session import unit_of_work

    with unit_of_work() as session:
        found = teams.find_team(session, team)
        _, key = teams.create_api_key(session, found.id, name)
    console.print(f"API key for {found.name} (shown once): [bold]{key}[/]")


@admin_app.command("keys")
def admin_keys(team: str, as_json: JsonFlag = False) -> None:
    """List a team's API keys: id, prefix, name, created, last used, revoked."""
    from rich.table import Table

    from api import presenters
    from api.services import teams
    from db.session import unit_of_work

    with unit_of_work() as session:
        keys = [presenters.api_key_object(k).model_dump() for k in teams.list_api_keys(session, team)]
    table = Table("id", "prefix", "name", "created", "last used", "revoked")
    for k in keys:
        when = [_when(k[f]) for f in ("created_at", "last_used_at", "revoked_at")]
        table.add_row(k["id"], k["prefix"] + "…", k["name"] or "-", *when)
    emit(keys, as_json, table)


def _when(unix: int | None) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M") if unix else "-"


@admin_app.command("revoke-key")
def admin_revoke_key(team: str, key_id: str) -> None:
    """Revoke an API key (its requests get 401, its dashboard sessions and open streams end)."""
    from api.services import teams
    from db.session import unit_of_work

    with unit_of_work() as session:
        key = teams.revoke_api_key(session, team, key_id)
    console.print(f"revoked {key.id} ({key.prefix}…) of team {team}")


@admin_app.command("set-quota")
def admin_set_quota(
    team: str,
    max_running: Annotated[int | None, typer.Option(help="Jobs training at once.")] = None,
    max_queued: Annotated[int | None, typer.Option(help="Jobs waiting to start.")] = None,
    gpu_hours: Annotated[float | None, typer.Option(help="GPU hours per period.")] = None,
    period_hours: Annotated[float, typer.Option(help="The GPU-hour budget's rolling window.")] = 720.0,
    max_storage_gb: Annotated[float | None, typer.Option(help="Stored training files, GB.")] = None,
) -> None:
    """Set a team's quotas (by id or name); an omitted limit becomes unlimited."""
    from api.schemas import QuotaLimits
    from api.services import quotas, teams
    from db.session import unit_of_work

    limits = QuotaLimits(
        max_running_jobs=max_running,
        max_queued_jobs=max_queued,
        gpu_hours_per_period=gpu_hours,
        period_hours=period_hours,
        max_dataset_storage_bytes=int(max_storage_gb * 1e9) if max_storage_gb is not None else None,
    )
    with unit_of_work() as session:
        view = quotas.set_quota(session, teams.find_team(session, team).id, limits)
    typer.echo(view.model_dump_json(indent=2))


if __name__ == "__main__":
    app()
