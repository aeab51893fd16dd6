"""`tunepool files …`: upload (validated line by line by the server) and list training files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.client import check, connect
from cli.output import JsonFlag, console, emit

files_app = typer.Typer(help="Training files.", no_args_is_help=True)


@files_app.command("upload")
def files_upload(path: Path, json_out: JsonFlag = False) -> None:
    """Upload a JSONL training file and print its validation report (exit 1 with the bad lines if refused)."""
    with connect() as client, path.open("rb") as f:
        body = check(client.post("/files", files={"file": (path.name, f)}, data={"purpose": "fine-tune"}))
    if json_out:
        emit(body, True)
        return
    table = Table(show_header=False, box=None)
    for name, value in (
        ("id", body["id"]),
        ("format", body["format"]),
        ("lines", body["line_count"]),
        ("bytes", body["bytes"]),
        ("sha256", body["sha256"]),
    ):
        table.add_row(f"[dim]{name}[/]", str(value))
    console.print(f"[green]✓[/] {path.name}: every line valid")
    console.print(table)


@files_app.command("list")
def files_list(json_out: JsonFlag = False) -> None:
    """The team's files."""
    with connect() as client:
        body = check(client.get("/files"))
    table = Table("id", "filename", "format", "lines", "bytes")
    for f in body["data"]:
        table.add_row(f["id"], f["filename"], f["format"], str(f["line_count"]), str(f["bytes"]))
    emit(body, json_out, table)
