"""`tunepool jobs …`: create, list, get, cancel, pause, resume, events, follow (live), metrics (and a plot), report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.client import check, connect
from cli.output import JsonFlag, console, emit, fmt

jobs_app = typer.Typer(help="Fine-tuning jobs.", no_args_is_help=True)


@jobs_app.command("create")
def jobs_create(
    model: Annotated[str, typer.Option(help="Base model name (see GET /v1/models).")],
    file: Annotated[str, typer.Option(help="Training file id.")],
    validation_file: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr_multiplier: float | None = None,
    r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA scaling alpha.")] = None,
    dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    target_modules: Annotated[
        str | None, typer.Option(help='"attention", "all-linear" or module names, comma-separated.')
    ] = None,
    quantization: Annotated[str | None, typer.Option(help="nf4, fp4 or none.")] = None,
    max_seq_length: int | None = None,
    max_steps: int | None = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: each epoch).")] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (default: every 10%).")] = None,
    artifacts: Annotated[str | None, typer.Option(help="adapter and/or merged, comma-separated.")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs of one host to train on at once (default 1).")] = None,
    parallelism: Annotated[str | None, typer.Option(help="With --gpus > 1: auto, ddp or fsdp.")] = None,
    suffix: str | None = None,
    json_out: JsonFlag = False,
) -> None:
    """Create a fine-tuning job (QLoRA NF4 by default); an option left out takes the server's default."""
    modules: str | list[str] | None = target_modules
    if target_modules and target_modules not in ("attention", "all-linear"):
        modules = target_modules.split(",")
    body: dict[str, Any] = {
        "model": model,
        "training_file": file,
        "validation_file": validation_file,
        "hyperparameters": _given(n_epochs=epochs, batch_size=batch_size, learning_rate_multiplier=lr_multiplier),
        "suffix": suffix,
        "lora": _given(r=r, alpha=alpha, dropout=dropout, target_modules=modules),
        "quantization": _given(mode=quantization),
        "training": _given(
            max_seq_length=max_seq_length,
            max_steps=max_steps,
            eval_every_steps=eval_every,
            save_every_steps=save_every,
            parallelism=parallelism,
        ),
    }
    if gpus is not None:
        body["resources"] = {"gpus": gpus}
    if artifacts is not None:
        body["artifacts"] = artifacts.split(",")
    with connect() as client:
        job = check(client.post("/fine_tuning/jobs", json=body))
    if json_out:
        emit(job, True)
    else:
        console.print(f"[green]✓[/] {job['id']} {job['status']}  (follow it: tunepool jobs follow {job['id']})")


def _given(**values: Any) -> dict[str, Any]:
    """Only the options the user set: the server's spec holds every default, the CLI repeats none."""
    return {k: v for k, v in values.items() if v is not None}


@jobs_app.command("list")
def jobs_list(limit: int = 20, json_out: JsonFlag = False) -> None:
    """The team's jobs, newest first."""
    with connect() as client:
        body = check(client.get("/fine_tuning/jobs", params={"limit": limit}))
    table = Table("id", "model", "status", "progress", "fine_tuned_model")
    for j in body["data"]:
        p = j["progress"]
        table.add_row(
            j["id"], j["model"], j["status"], f"{p['step']}/{p['total_steps'] or '?'}", j["fine_tuned_model"] or ""
        )
    emit(body, json_out, table)


@jobs_app.command("get")
def jobs_get(job_id: str, json_out: JsonFlag = False) -> None:
    """One job: status, progress, ETA, result."""
    with connect() as client:
        job = check(client.get(f"/fine_tuning/jobs/{job_id}"))
    p = job["progress"]
    table = Table(show_header=False, box=None)
    rows = [
        ("id", job["id"]),
        ("status", job["status"]),
        ("model", job["model"]),
        ("progress", f"{p['step']}/{p['total_steps'] or '?'} ({fmt(p['percent'], '.1f')}%)"),
        ("tokens/s", fmt(p["tokens_per_s"], ",.0f")),
        ("estimated_finish", str(p.get("estimated_finish") or "–")),
        ("fine_tuned_model", job["fine_tuned_model"] or "–"),
        ("error", (job["error"] or {}).get("message", "–")),
        *(("warning", f"{w['code']}: {w['message']}") for w in job.get("warnings", [])),
    ]
    for name, value in rows:
        table.add_row(f"[dim]{name}[/]", str(value))
    emit(job, json_out, table)


def _action(job_id: str, action: str) -> None:
    with connect() as client:
        job = check(client.post(f"/fine_tuning/jobs/{job_id}/{action}"))
    console.print(f"{job['id']} {job['status']}")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job (a running one stops within seconds)."""
    _action(job_id, "cancel")


@jobs_app.command("pause")
def jobs_pause(job_id: str) -> None:
    """Pause: a running job saves a checkpoint and frees its GPU; `resume` continues from it."""
    _action(job_id, "pause")


@jobs_app.command("resume")
def jobs_resume(job_id: str) -> None:
    """Put a paused job back in the queue; it continues from its checkpoint."""
    _action(job_id, "resume")


@jobs_app.command("events")
def jobs_events(job_id: str, limit: int = 50, json_out: JsonFlag = False) -> None:
    """The job's latest events, oldest first."""
    with connect() as client:
        body = check(client.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": limit}))
    if json_out:
        emit(body, True)
        return
    for e in reversed(body["data"]):
        console.print(f"[dim]{e['id']}[/] {e['message']}")


@jobs_app.command("follow")
def jobs_follow(job_id: str, json_out: JsonFlag = False) -> None:
    """Live progress until the job ends. Exit code: 0 succeeded, 1 failed, 2 cancelled, 3 could not follow.

    A paused job keeps the command waiting (it ends when the job does); Ctrl-C stops following, not the job.
    """
    from cli.follow import follow

    raise typer.Exit(follow(job_id, json_out))


@jobs_app.command("metrics")
def jobs_metrics(
    job_id: str,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of train/valid loss and grad-norm vs step.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """The per-step series (train/valid loss, grad-norm, learning rate, tokens/s)."""
    with connect() as client:
        body = check(client.get(f"/fine_tuning/jobs/{job_id}/metrics"))
    points = body["data"]
    if plot is not None:
        from cli.plot import plot_metrics

        plot_metrics(points, plot, title=job_id)
        if not json_out:
            console.print(f"[green]✓[/] {len(points)} steps plotted → {plot}")
            return
    table = Table("step", "train_loss", "valid_loss", "grad_norm", "learning_rate", "tokens/s")
    for p in points:
        table.add_row(
            str(p["step"]),
            fmt(p["train_loss"]),
            fmt(p["valid_loss"]),
            fmt(p["grad_norm"]),
            fmt(p["learning_rate"], ".2e"),
            fmt(p["tokens_per_s"], ",.0f"),
        )
    emit(body, json_out, table)


@jobs_app.command("checkpoints")
def jobs_checkpoints(job_id: str, json_out: JsonFlag = False) -> None:
    """Stored checkpoints (download one with `artifacts download JOB --kind checkpoint --step N`)."""
    with connect() as client:
        body = check(client.get(f"/fine_tuning/jobs/{job_id}/checkpoints", params={"limit": 100}))
    table = Table("step", "checkpoint", "train_loss", "valid_loss")
    for c in body["data"]:
        m = c["metrics"]
        table.add_row(
            str(c["step_number"]), c["fine_tuned_model_checkpoint"], fmt(m.get("train_loss")), fmt(m.get("valid_loss"))
        )
    emit(body, json_out, table)


@jobs_app.command("report")
def jobs_report(job_id: str, json_out: JsonFlag = False) -> None:
    """The evaluation report: base vs fine-tune validation loss, the merge check, warnings, sample generations."""
    with connect() as client:
        report = check(client.get(f"/fine_tuning/jobs/{job_id}/report"))
    if json_out:
        emit(report, True)
        return
    losses = Table(
        "model",
        "loss",
        "perplexity",
        title=f"Evaluated on {report['evaluated_on']} "
        f"({report['examples']} examples); published step {report['published_step']} of {report['steps']}",
    )
    for name in ("base", "fine_tune"):
        losses.add_row(name, fmt(report[name]["loss"]), fmt(report[name]["perplexity"], ",.2f"))
    console.print(losses)
    merge = report.get("merge_check")
    if merge:
        verdict = "[green]passed[/]" if merge["passed"] else "[red]FAILED: merged model not published[/]"
        weights = (
            f"weight error {merge['max_weight_error']} against base + adapter's "
            f"(tolerance {merge['weight_tolerance']}, "
            f"worst {merge['worst_module']}); "
            if merge.get("max_weight_error") is not None
            else ""
        )
        console.print(
            f"merge check {verdict}: {weights}merged loss {fmt(merge['merged_loss'])} vs base + adapter "
            f"{fmt(merge['base_plus_adapter_loss'])} (tolerance {merge['tolerance']}, {merge['dtype']})"
        )
    for warning in report["warnings"]:
        console.print(f"[yellow]warning[/] {warning['code']}: {warning['message']}")
    generations = Table("prompt", "reference", "base", "fine-tune", title="Greedy generations")
    for g in report["generations"]:
        generations.add_row(g["prompt"], g["reference"], g["base"], g["fine_tune"])
    console.print(generations)
