"""docker-compose.yml: valid for the compose client, and wired the way tunepool's processes need."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.helpers import ROOT, dockerfile_instructions, exec_form, setting_env_names

COMPOSE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) if present, else the standalone `docker-compose`; None when neither is."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _config() -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.mark.parametrize("profile", [None, "multi-gpu"])
def test_compose_client_accepts_the_file(profile: str | None) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no compose client (`docker compose` or `docker-compose`) installed")
    args = [*command, "-f", str(COMPOSE), *(["--profile", profile] if profile else []), "config"]
    clean_env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}  # no POSTGRES_PASSWORD etc.: the defaults apply
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=clean_env)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    expected = {"postgres", "redis", "minio", "minio-init", "models", "api", "dispatcher", "worker-gpu0"}
    # (docker-compose 1.x lists profile services always; `docker compose` v2 only with the profile.)
    assert expected | ({"worker-gpu1"} if profile else set()) <= set(resolved["services"])
    # Variables fall back to working development defaults, so a bare `docker compose up` needs no .env.
    assert resolved["services"]["api"]["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://tunepool:")


def test_api_migrates_first_and_everything_waits_for_its_dependencies() -> None:
    services = _config()["services"]
    command = " ".join(services["api"]["command"])
    assert command.index("python -m db.migrate") < command.index("uvicorn api.app:create_app")
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    for name in ("dispatcher", "worker-gpu0", "worker-gpu1"):
        assert services[name]["depends_on"]["api"]["condition"] == "service_healthy", name  # i.e. migrated
    assert services["dispatcher"]["command"] == ["python", "-m", "worker.dispatcher"]
    assert "mc mb --ignore-existing local/tunepool" in services["minio-init"]["command"][0]


def test_one_worker_per_gpu_with_an_nvidia_reservation_and_the_shared_model_cache() -> None:
    services = _config()["services"]
    workers = {n: s for n, s in services.items() if n.startswith("worker-gpu")}
    gpus = []
    for name, worker in workers.items():
        [device] = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        gpus += device["device_ids"]
        assert worker["environment"]["TUNEPOOL_WORKER_ID"] == name
        assert worker["build"]["dockerfile"] == "Dockerfile.gpu"
        assert "model-cache:/var/cache/tunepool" in worker["volumes"]
        assert worker["command"][:2] == ["-Q", "gpu"]
    assert len(gpus) == len(set(gpus)) == len(workers) >= 2  # distinct GPUs
    assert "model-cache:/var/cache/tunepool" in services["models"]["volumes"]
    # The worker image's entrypoint is the Celery command cli/processes.py runs; no pool flags, which would override
    # the pool worker/celery_app.py picks from TUNEPOOL_GPUS (solo for one slot, a thread per slot for several).
    entry = exec_form(dict(dockerfile_instructions(ROOT / "Dockerfile.gpu"))["ENTRYPOINT"])
    assert entry[entry.index("celery") :][:4] == ["celery", "-A", "worker.celery_app", "worker"]
    for flag in (["--without-gossip"], ["--without-mingle"]):
        assert " ".join(flag) in " ".join(entry)
    assert "--pool" not in entry and "--concurrency" not in entry


def test_every_tunepool_variable_is_a_real_setting_and_storage_is_the_object_store() -> None:
    services = _config()["services"]
    known = setting_env_names()
    for name, service in services.items():
        for key in service.get("environment") or {}:
            if key.startswith("TUNEPOOL_") or key in ("DATABASE_URL", "REDIS_URL"):
                assert key in known, f"{name}: {key} is not a setting in core/settings.py"
    env = services["api"]["environment"]
    assert env["TUNEPOOL_STORAGE_URL"].startswith("s3://") and env["TUNEPOOL_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["worker-gpu0"]["environment"]["TUNEPOOL_STORAGE_URL"] == env["TUNEPOOL_STORAGE_URL"]


def test_vllm_profile_serves_with_runtime_lora_and_a_sidecar_sharing_adapters() -> None:
    services = _config()["services"]
    vllm, sidecar = services["vllm"], services["vllm-sidecar"]
    assert vllm["profiles"] == sidecar["profiles"] == ["vllm"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and "--enable-lora" in vllm["command"]
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "model-cache:/var/cache/tunepool:ro" in vllm["volumes"]
    assert sidecar["command"][:3] == ["python", "-m", "worker.serving.registrar"]
    adapter_dir = next(a for a in sidecar["command"] if a.startswith("--adapter-dir=")).split("=", 1)[1]
    assert f"adapters:{adapter_dir}:ro" in vllm["volumes"] and f"adapters:{adapter_dir}" in sidecar["volumes"]
    assert "--vllm-url=http://vllm:8001" in sidecar["command"] and "--port=8001" in vllm["command"]
