"""`tunepool artifacts …`: list a job's artifacts; download one (progress bar, resumable, sha256-verified)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from cli.client import check, connect
from cli.output import JsonFlag, console, emit

artifacts_app = typer.Typer(help="Trained adapters, merged models and checkpoints.", no_args_is_help=True)


@artifacts_app.command("list")
def artifacts_list(job_id: str, json_out: JsonFlag = False) -> None:
    """A job's artifacts."""
    with connect() as client:
        body = check(client.get(f"/fine_tuning/jobs/{job_id}/artifacts"))
    table = Table("id", "kind", "step", "filename", "bytes", "sha256")
    for a in body["data"]:
        table.add_row(a["id"], a["kind"], str(a["step"] or ""), a["filename"], f"{a['bytes']:,}", a["sha256"][:12])
    emit(body, json_out, table)


@artifacts_app.command("download")
def artifacts_download(
    job_id: str,
    kind: Annotated[str, typer.Option(help="adapter, merged or checkpoint")] = "adapter",
    step: Annotated[int | None, typer.Option(help="Checkpoint step (default: the newest).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to unpack into.")] = Path("."),
) -> None:
    """Download an artifact, verify its sha256 and unpack it; an interrupted download resumes (HTTP Range)."""
    with connect() as client:
        art = _choose(check(client.get(f"/fine_tuning/jobs/{job_id}/artifacts"))["data"], job_id, kind, step)
        output.mkdir(parents=True, exist_ok=True)
        part = output / f".{art['id']}.part"  # named by artifact: a resume never mixes two files
        _download(client, art, part)
    if _sha256(part) != art["sha256"]:
        part.unlink()
        typer.secho("checksum mismatch: the download was corrupted and is removed; run again", fg="red", err=True)
        raise typer.Exit(1)
    with tarfile.open(part) as tar:
        tar.extractall(output, filter="data")
    part.unlink()
    console.print(f"[green]✓[/] {art['kind']} {art['filename']} ({art['bytes']:,} bytes, sha256 ok) → {output}")


def _choose(arts: list[dict[str, Any]], job_id: str, kind: str, step: int | None) -> dict[str, Any]:
    matches = [a for a in arts if a["kind"] == kind and (step is None or a["step"] == step)]
    if not matches:
        typer.secho(f"job {job_id} has no {kind} artifact" + (f" at step {step}" if step else ""), fg="red", err=True)
        raise typer.Exit(1)
    return max(matches, key=lambda a: a["step"] or 0)


def _download(client: httpx.Client, art: dict[str, Any], part: Path) -> None:
    """Fetch into `part`, continuing after the bytes already there."""
    have = part.stat().st_size if part.exists() else 0
    if have > art["bytes"]:
        part.unlink()
        have = 0
    if have == art["bytes"]:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have:
        console.print(f"resuming at byte {have:,} of {art['bytes']:,}")
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with client.stream("GET", art["download_url"].removeprefix("/v1"), headers=headers) as r:
        if r.status_code not in (200, 206):
            r.read()
            check(r)
        if r.status_code == 200:  # the server sent the whole file: start over
            have = 0
        with part.open("ab" if have else "wb") as out, Progress(*columns, console=console) as bar:
            task = bar.add_task(art["filename"], total=art["bytes"], completed=have)
            for block in r.iter_bytes(1 << 20):
                out.write(block)
                bar.advance(task, len(block))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
