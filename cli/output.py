"""Console output shared by the CLI's commands: rich tables for people, `--json` for scripts."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON (for scripts).")]


def emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    """The table, or the JSON when asked (or when there is no table)."""
    if as_json or table is None:
        typer.echo(json.dumps(data, indent=2))
    else:
        console.print(table)


def fmt(value: float | None, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)
