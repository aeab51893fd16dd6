"""`tunepool chat MODEL`: a fine-tune's answers streamed in the terminal, optionally followed by its base model's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer

from cli.client import check, connect


def base_of(model: str) -> str:
    """ft:<base>:<team>:<suffix>:<id>[:ckpt-step-N] → <base>; a base model is its own base."""
    return model.split(":")[1] if model.startswith("ft:") else model


def stream_chat(client: httpx.Client, body: dict[str, Any]) -> Iterator[str]:
    """The answer's text pieces as the API streams them (OpenAI chat completion chunks)."""
    with client.stream(
        "POST", "/chat/completions", json={**body, "stream": True}, timeout=httpx.Timeout(60, read=300)
    ) as r:
        if not r.is_success:
            r.read()
            check(r)
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:
                typer.secho(f"\nerror: {chunk['error']['message']}", fg="red", err=True)
                raise typer.Exit(1)
            for choice in chunk.get("choices") or []:
                if text := (choice.get("delta") or {}).get("content"):
                    yield text


def chat(
    model: Annotated[str, typer.Argument(help="A base model, a fine-tune (ft:…) or a checkpoint (ft:…:ckpt-step-N).")],
    base_too: Annotated[bool, typer.Option("--base-too", help="Also stream the base model's answer.")] = False,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Ask once and exit (default: a chat loop).")
    ] = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0, max=2)] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.01, max=1)] = 1.0,
    seed: Annotated[int | None, typer.Option(min=0)] = None,
) -> None:
    """Chat with a model; each answer streams as it is generated."""
    sampling: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
    if seed is not None:
        sampling["seed"] = seed
    models = [model, base_of(model)] if base_too and base_of(model) != model else [model]
    history: dict[str, list[dict[str, str]]] = {
        m: [{"role": "system", "content": system}] if system else [] for m in models
    }
    with connect() as client:
        while True:
            text = prompt if prompt is not None else typer.prompt("you", prompt_suffix="> ")
            for m in models:
                history[m].append({"role": "user", "content": text})
                if len(models) > 1:
                    typer.secho(f"[{m}]", fg="cyan")
                answer = ""
                for piece in stream_chat(client, {"model": m, "messages": history[m], **sampling}):
                    typer.echo(piece, nl=False)
                    answer += piece
                typer.echo()
                history[m].append({"role": "assistant", "content": answer})
            if prompt is not None:
                return
