"""The benchmarks that drive the training recipe type-check (bench/mypy.ini): their reporters satisfy the
Reporter protocol — bench/gpu_worker_check.py's once lacked checkpoint() and crashed at its first checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_scripts_type_check(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "bench/mypy.ini", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stdout[-4000:]
