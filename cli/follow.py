"""`tunepool jobs follow`: the job's SSE stream as a live progress bar; reconnects with Last-Event-ID."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from cli.client import connect
from cli.output import console, fmt
from cli.sse import SseEvent, iter_sse, open_stream

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}
FOLLOW_ERROR = 3  # unknown job, or the server stayed unreachable
MAX_RETRIES = 8
ETA_REFRESH_SECONDS = 5.0
SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    """The last `width` values as block characters, scaled to their own range."""
    tail = values[-width:]
    if not tail:
        return ""
    low, high = min(tail), max(tail)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * len(SPARK)))] for v in tail)


class FollowView:
    """The live display: status, step/total bar, tokens/s, ETA, loss, grad-norm and a loss sparkline."""

    def __init__(self, client: httpx.Client, job_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.losses: list[float] = []
        self.eta = "–"
        self._eta_checked = 0.0
        self.progress = Progress(
            TextColumn("[bold]{task.fields[status]:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tps]} tok/s  ETA {task.fields[eta]}"),
            TextColumn("loss {task.fields[loss]}  gn {task.fields[gn]}  [cyan]{task.fields[spark]}"),
            console=console,
        )
        self.task: TaskID = self.progress.add_task(
            job_id, total=None, status="…", tps="–", eta="–", loss="–", gn="–", spark=""
        )

    def show(self, event: SseEvent) -> None:
        data: dict[str, Any] = event.data.get("data") or {}
        if event.event == "metrics":
            if data.get("train_loss") is not None:
                self.losses.append(float(data["train_loss"]))
            loss = fmt(data.get("train_loss")) + (
                f" (valid {fmt(data['valid_loss'])})" if data.get("valid_loss") is not None else ""
            )
            self.progress.update(
                self.task,
                completed=data["step"],
                total=data["total_steps"],
                tps=fmt(data.get("tokens_per_s"), ",.0f"),
                eta=self._eta(),
                loss=loss,
                gn=fmt(data.get("grad_norm"), ".3f"),
                spark=sparkline(self.losses),
            )
            return
        if event.event == "status":
            self.progress.update(self.task, status=data.get("status", "?"))
        level = event.data.get("level", "info")
        style = "red" if level == "error" else "dim"
        self.progress.console.print(f"[{style}]{event.data.get('message', '')}[/]")

    def _eta(self) -> str:
        """The server's estimated_finish (measured step time), fetched at most every few seconds."""
        now = time.monotonic()
        if now - self._eta_checked >= ETA_REFRESH_SECONDS:
            self._eta_checked = now
            try:
                finish = self.client.get(f"/fine_tuning/jobs/{self.job_id}").json()["progress"].get("estimated_finish")
            except (httpx.HTTPError, ValueError, KeyError):
                finish = None
            left = finish - datetime.now(UTC).timestamp() if finish else None
            self.eta = time.strftime("%H:%M:%S", time.gmtime(max(0, left))) if left is not None else "–"
        return self.eta


def follow(job_id: str, as_json: bool = False) -> int:
    """Stream the job's events until it ends; the exit code says how it ended."""
    last_id: int | None = None
    retries = 0
    with connect() as client:
        view = None if as_json else FollowView(client, job_id)
        with view.progress if view else contextlib.nullcontext():
            while True:
                try:
                    with open_stream(client, job_id, last_id) as response:
                        if response.status_code != 200:
                            response.read()
                            console.print(f"[red]error {response.status_code}:[/] {_message(response)}")
                            return FOLLOW_ERROR
                        for event in iter_sse(response):
                            retries = 0
                            if event.event == "end":
                                status = str(event.data.get("status"))
                                if as_json:
                                    print(json.dumps({"event": "end", "status": status}), flush=True)
                                else:
                                    console.print(f"Job {job_id} {status}")
                                return EXIT_CODES.get(status, FOLLOW_ERROR)
                            last_id = event.id if event.id is not None else last_id
                            if view is not None:
                                view.show(event)
                            else:
                                print(json.dumps(event.data), flush=True)
                except httpx.TransportError as exc:
                    retries += 1
                    if retries > MAX_RETRIES:
                        console.print(f"[red]lost the stream:[/] {exc}")
                        return FOLLOW_ERROR
                time.sleep(min(2.0**retries, 10.0) if retries else 0.5)  # then resume after the last event seen


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text
