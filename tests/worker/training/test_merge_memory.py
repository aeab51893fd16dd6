"""The merge fits: the training model is freed before the 16-bit base loads (resident memory measured by the
kernel in a child process), and a GPU without room for the 16-bit base merges on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.training.outputs import merge_device

ROOT = Path(__file__).resolve().parents[3]
MIB = 2**20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak RSS")
def test_merge_peaks_no_higher_than_the_16bit_model_plus_the_adapter(tiny_model: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # Large blocks come from mmap and go back to the kernel when freed, so resident memory follows tensors.
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "OMP_NUM_THREADS": "1",
        "TUNEPOOL_DATA_CACHE_DIR": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.worker.training.merge_probe", str(tiny_model), str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("PROBE "))[6:])
    merge_model = 2 * probe["parameters"] + 2 * probe["adapter_bytes"]  # bf16 base + the adapter in float32

    # Resident memory above what the process held before any model was loaded, at the merge's peak.
    added = probe["merge_peak"] - probe["before_load"]
    # Slack for one layer's merge delta, the saved shards' buffers and allocator rounding: far below the float32
    # training model (4 B/parameter) that stayed alive before.
    assert added <= merge_model + 0.25 * merge_model + 16 * MIB, (added / MIB, merge_model / MIB, probe)
    assert probe["merge_start"] - probe["before_load"] < 0.5 * merge_model  # the training model is gone


def test_merge_goes_to_the_cpu_when_the_gpu_lacks_room_for_the_16bit_base() -> None:
    gib = 2**30
    assert merge_device("cuda:0", need_bytes=16 * gib, free_bytes=40 * gib) == "cuda:0"
    assert merge_device("cuda:0", need_bytes=16 * gib, free_bytes=17 * gib) == "cpu"  # 85 % of it is too little
    assert merge_device("cpu", need_bytes=16 * gib, free_bytes=None) == "cpu"
