"""The real `tunepool` CLI (a subprocess) against the running service: upload, create, follow, metrics, download."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.data import ROWS, TINY_MODEL


@pytest.fixture
def cli(running_service, team, tmp_path):  # type: ignore[no-untyped-def]
    """Run `tunepool ARGS…`; configured by the environment, with an empty config dir."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TUNEPOOL_BASE_URL": running_service.base_url + "/v1",
        "TUNEPOOL_API_KEY": team.key,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "200",
    }

    def run(*args: str, env_override: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=env_override or env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _create(cli: Any, tmp_path: Path, *extra: str) -> str:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    file_id = _json(cli("files", "upload", str(data), "--json"))["id"]
    args = ["--model", TINY_MODEL, "--file", file_id, "--quantization", "none", "--artifacts", "adapter"]
    args += ["--max-seq-length", "64", "--batch-size", "2", "--epochs", "1", *extra]
    return str(_json(cli("jobs", "create", *args, "--json"))["id"])


def test_follow_metrics_plot_and_resumable_download(cli, tmp_path, running_service, team) -> None:  # type: ignore[no-untyped-def]
    report = cli("files", "upload", str(_write(tmp_path / "t.jsonl")))
    assert report.returncode == 0 and "every line valid" in report.stdout and "chat" in report.stdout
    job_id = _create(cli, tmp_path, "--max-steps", "6")

    followed = cli("jobs", "follow", job_id)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert f"Job {job_id} succeeded" in followed.stdout and "Training started: 6 steps" in followed.stdout

    assert job_id in [j["id"] for j in _json(cli("jobs", "list", "--json"))["data"]]
    assert _json(cli("jobs", "get", job_id, "--json"))["status"] == "succeeded"
    series = _json(cli("jobs", "metrics", job_id, "--json"))["data"]
    assert [p["step"] for p in series] == list(range(1, 7))
    assert cli("jobs", "metrics", job_id, "--plot", str(tmp_path / "loss.png")).returncode == 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    got = cli("artifacts", "download", job_id, "--kind", "adapter", "-o", str(tmp_path / "a"))
    assert got.returncode == 0 and "sha256 ok" in got.stdout, got.stderr
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()

    # An interrupted download continues with a Range request and still verifies the whole file.
    [art] = [a for a in _json(cli("artifacts", "list", job_id, "--json"))["data"] if a["kind"] == "adapter"]
    first = httpx.get(
        running_service.base_url + art["download_url"],
        headers={"Authorization": f"Bearer {team.key}", "Range": f"bytes=0-{art['bytes'] // 2 - 1}"},
    )
    assert first.status_code == 206
    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    (resumed_dir / f".{art['id']}.part").write_bytes(first.content)
    resumed = cli("artifacts", "download", job_id, "--kind", "adapter", "-o", str(resumed_dir))
    assert resumed.returncode == 0 and f"resuming at byte {len(first.content):,}" in resumed.stdout, resumed.stderr
    assert (resumed_dir / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "a" / "adapter_model.safetensors"
    ).read_bytes()

    # A corrupt partial file fails the checksum and is removed, so the next try starts clean.
    bad_dir = tmp_path / "c"
    bad_dir.mkdir()
    (bad_dir / f".{art['id']}.part").write_bytes(b"x" * 100)
    bad = cli("artifacts", "download", job_id, "--kind", "adapter", "-o", str(bad_dir))
    assert bad.returncode == 1 and "checksum mismatch" in bad.stderr
    assert not (bad_dir / f".{art['id']}.part").exists()


def _write(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_follow_exit_codes(cli, tmp_path, running_service, team) -> None:  # type: ignore[no-untyped-def]
    bad = _create(cli, tmp_path, "--target-modules", "no_such_proj")
    assert cli("jobs", "follow", bad).returncode == 1  # failed

    cancelled = _create(cli, tmp_path, "--max-steps", "500")
    assert cli("jobs", "cancel", cancelled).returncode == 0
    followed = cli("jobs", "follow", cancelled, "--json")
    assert followed.returncode == 2  # cancelled
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert lines[-1] == {"event": "end", "status": "cancelled"}
    assert all(e["object"] == "fine_tuning.job.event" for e in lines[:-1])

    assert cli("jobs", "follow", "ftjob-nope").returncode == 3  # nothing to follow

    config = tmp_path / "home" / "tunepool" / "config.toml"  # the config file instead of the environment
    config.parent.mkdir(parents=True)
    config.write_text(f'base_url = "{running_service.base_url}/v1"\napi_key = "{team.key}"\n')
    env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "home")}
    assert bad in [j["id"] for j in _json(cli("jobs", "list", "--json", env_override=env))["data"]]


def test_create_sends_only_the_options_given(cli, tmp_path, running_service, team) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path / "t.jsonl")
    file_id = _json(cli("files", "upload", str(data), "--json"))["id"]
    base = ["jobs", "create", "--model", TINY_MODEL, "--file", file_id, "--max-steps", "500", "--json"]
    plain = _json(cli(*base))
    given = _json(cli(*base, "--r", "4", "--target-modules", "q_proj,v_proj", "--quantization", "none"))
    for job in (plain, given):
        assert cli("jobs", "cancel", job["id"]).returncode == 0
    # Left out: the server's spec defaults, exactly as a REST call without them gets.
    assert plain["lora"] == {"r": 16, "alpha": 32.0, "dropout": 0.05, "target_modules": "all-linear"}
    assert plain["quantization"]["mode"] == "nf4" and plain["training"]["max_seq_length"] == 2048
    assert plain["artifacts"] == ["adapter", "merged"]
    assert given["lora"]["r"] == 4 and given["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert given["lora"]["alpha"] == 32.0 and given["quantization"]["mode"] == "none"


def test_create_asks_for_gpus_and_shows_why_a_pool_cannot_hold_them(cli, tmp_path, running_service, team) -> None:  # type: ignore[no-untyped-def]
    file_id = _json(cli("files", "upload", str(_write(tmp_path / "t.jsonl")), "--json"))["id"]
    base = ["jobs", "create", "--model", TINY_MODEL, "--file", file_id, "--max-steps", "500", "--json"]
    one = _json(cli(*base, "--gpus", "1", "--parallelism", "ddp"))
    assert cli("jobs", "cancel", one["id"]).returncode == 0
    assert one["training"]["parallelism"] == "ddp" and not one.get("resources")
    # The session's service has one-slot workers only: two GPUs on one host is a 400 naming the field.
    wide = cli(*base, "--gpus", "2", "--batch-size", "2")
    assert wide.returncode != 0 and "resources.gpus" in wide.stdout + wide.stderr
