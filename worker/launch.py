"""Starting and stopping a job's training processes: the command (one process, or torchrun for several GPUs on one
host or across hosts), its environment, and a child that dies with whoever started it.

Torch-free: the worker process never imports the training stack; its children do.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
TERMINATE_GRACE_SECONDS = 5.0
RENDEZVOUS_PORTS = 1000  # a job's multi-host rendezvous port: base + a hash of job and attempt, within this range


@dataclass(frozen=True)
class Rendezvous:
    """torchrun's multi-host meeting point: node 0's host (which serves it) and a port of its own per attempt."""

    nodes: int
    endpoint: str  # "host:port" of node 0
    run_id: str
    is_host: bool  # this node serves the rendezvous (node 0)
    join_timeout_s: float = 600.0  # how long node 0 waits for the others before the attempt fails


def rendezvous_port(base: int, job_id: str, attempt: int) -> int:
    """A port for this attempt's rendezvous: stable for every node of the attempt, different for the next attempt
    (so a retry never meets an old attempt's leftovers)."""
    return base + zlib.crc32(f"{job_id}:{attempt}".encode()) % RENDEZVOUS_PORTS


def training_command(
    job_id: str, workdir: Path, attempt: int, processes: int, rendezvous: Rendezvous | None = None
) -> list[str]:
    """One training child; for several GPUs one per GPU under torchrun (rank 0 alone reports). On one host the
    standalone rendezvous picks a free port, so jobs of one host do not collide; across hosts, c10d on node 0."""
    child = ["-m", "worker.job_process", job_id, str(workdir), str(attempt)]
    if processes == 1 and rendezvous is None:
        return [sys.executable, *child]
    launcher = ["-m", "torch.distributed.run", f"--nproc-per-node={processes}", "--max-restarts=0"]
    if rendezvous is None:
        launcher.append("--standalone")
    else:
        launcher += [
            f"--nnodes={rendezvous.nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous.endpoint}",
            f"--rdzv-id={rendezvous.run_id}",
            # Said, not guessed from the address: two nodes on one machine (or one address) would both think so.
            f"--rdzv-conf=is_host={int(rendezvous.is_host)},join_timeout={int(rendezvous.join_timeout_s)}",
        ]
    return [sys.executable, *launcher, *child]


def child_env(gpus: list[int] | None, processes: int) -> dict[str, str]:
    """The worker's environment for a job's children: its GPUs only, and its share of CPU threads per rank."""
    env = dict(os.environ)
    if gpus is not None:  # the job's GPUs only: jobs sharing this host's GPUs never see each other's
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
    if processes > 1 and "OMP_NUM_THREADS" not in env:  # torchrun would give each rank one thread
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return env


def start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a training child in a session of its own (so it can be stopped as a group), logging to `log_path`."""
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent, env=env
        )


def die_with_parent() -> None:
    """In a child before exec: the kernel kills it when its parent dies, so a lost worker leaves no trainer."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def terminate(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's group, SIGKILL it after a grace period."""
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
