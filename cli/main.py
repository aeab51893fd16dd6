"""The `tunepool` command: `up` runs the service; the other commands are a thin client of its REST API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.client import check, connect

app = typer.Typer(help="tunepool: self-hosted LoRA/QLoRA fine-tuning.", no_args_is_help=True)
files_app = typer.Typer(help="Training files.", no_args_is_help=True)
jobs_app = typer.Typer(help="Fine-tuning jobs.", no_args_is_help=True)
artifacts_app = typer.Typer(help="Trained adapters and merged models.", no_args_is_help=True)
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
console = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON.")]


def _emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json or table is None:
        typer.echo(json.dumps(data, indent=2))
    else:
        console.print(table)


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


@files_app.command("upload")
def files_upload(path: Path, json_out: JsonFlag = False) -> None:
    """Upload and validate a JSONL training file."""
    with connect() as client, path.open("rb") as f:
        body = check(client.post("/files", files={"file": (path.name, f)}, data={"purpose": "fine-tune"}))
    if json_out:
        _emit(body, True)
    else:
        console.print(
            f"[green]✓[/] {body['id']}  {body['format']}, {body['line_count']} lines, {body['bytes']} bytes"
        )


@files_app.command("list")
def files_list(json_out: JsonFlag = False) -> None:
    with connect() as client:
        body = check(client.get("/files"))
    table = Table("id", "filename", "format", "lines", "bytes")
    for f in body["data"]:
        table.add_row(f["id"], f["filename"], f["format"], str(f["line_count"]), str(f["bytes"]))
    _emit(body, json_out, table)


@jobs_app.command("create")
def jobs_create(
    model: Annotated[str, typer.Option(help="Base model name (see GET /v1/models).")],
    file: Annotated[str, typer.Option(help="Training file id.")],
    validation_file: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr_multiplier: float | None = None,
    r: int = 16,
    alpha: float = 32,
    dropout: float = 0.05,
    target_modules: str = "all-linear",
    quantization: str = "nf4",
    max_seq_length: int = 2048,
    artifacts: str = "adapter,merged",
    suffix: str | None = None,
    json_out: JsonFlag = False,
) -> None:
    """Create a fine-tuning job (QLoRA NF4 by default)."""
    hyper = {
        k: v
        for k, v in (
            ("n_epochs", epochs),
            ("batch_size", batch_size),
            ("learning_rate_multiplier", lr_multiplier),
        )
        if v is not None
    }
    modules: str | list[str] = (
        target_modules if target_modules in ("attention", "all-linear") else target_modules.split(",")
    )
    body = {
        "model": model,
        "training_file": file,
        "validation_file": validation_file,
        "hyperparameters": hyper,
        "suffix": suffix,
        "lora": {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": modules},
        "quantization": {"mode": quantization},
        "training": {"max_seq_length": max_seq_length},
        "artifacts": artifacts.split(","),
    }
    with connect() as client:
        job = check(client.post("/fine_tuning/jobs", json=body))
    _emit(job, json_out) if json_out else console.print(f"[green]✓[/] {job['id']} {job['status']}")


@jobs_app.command("list")
def jobs_list(limit: int = 20, json_out: JsonFlag = False) -> None:
    with connect() as client:
        body = check(client.get("/fine_tuning/jobs", params={"limit": limit}))
    table = Table("id", "model", "status", "progress", "fine_tuned_model")
    for j in body["data"]:
        p = j["progress"]
        table.add_row(
            j["id"],
            j["model"],
            j["status"],
            f"{p['step']}/{p['total_steps'] or '?'}",
            j["fine_tuned_model"] or "",
        )
    _emit(body, json_out, table)


@jobs_app.command("get")
def jobs_get(job_id: str) -> None:
    with connect() as client:
        _emit(check(client.get(f"/fine_tuning/jobs/{job_id}")), True)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    with connect() as client:
        job = check(client.post(f"/fine_tuning/jobs/{job_id}/cancel"))
    console.print(f"{job['id']} {job['status']}")


@jobs_app.command("events")
def jobs_events(job_id: str, limit: int = 50) -> None:
    with connect() as client:
        body = check(client.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": limit}))
    for e in reversed(body["data"]):
        console.print(f"[dim]{e['id']}[/] {e['message']}")


@artifacts_app.command("download")
def artifacts_download(
    job_id: str,
    kind: Annotated[str, typer.Option(help="adapter or merged")] = "adapter",
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to unpack into.")] = Path("."),
) -> None:
    """Download an artifact, verify its sha256 and unpack it."""
    import hashlib
    import tarfile
    import tempfile

    with connect() as client:
        arts = [
            a for a in check(client.get(f"/fine_tuning/jobs/{job_id}/artifacts"))["data"] if a["kind"] == kind
        ]
        if not arts:
            typer.secho(f"job {job_id} has no {kind} artifact", fg="red", err=True)
            raise typer.Exit(1)
        art = arts[0]
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as tmp:
            with client.stream("GET", art["download_url"].removeprefix("/v1")) as r:
                if not r.is_success:
                    check(r)
                for block in r.iter_bytes(1 << 20):
                    digest.update(block)
                    tmp.write(block)
            if digest.hexdigest() != art["sha256"]:
                typer.secho("checksum mismatch; download corrupted", fg="red", err=True)
                raise typer.Exit(1)
            tmp.seek(0)
            output.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=tmp) as tar:
                tar.extractall(output, filter="data")
    console.print(f"[green]✓[/] {kind} ({art['bytes']} bytes, sha256 ok) → {output}")


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


if __name__ == "__main__":
    app()
