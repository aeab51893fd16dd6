"""The worker's registration and heartbeat, from a background thread of the Celery process.

A worker process owns one slot (its GPU, or the CPU) or, with TUNEPOOL_GPUS=0,1,…, one slot per listed GPU: each
slot is a row of its own (`{worker_id}-gpu{i}`), all with the process's id as their host, beating together.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from core.settings import get_settings
from core.tasks import gpu_queue, worker_queue
from db.repositories import workers
from db.session import unit_of_work
from worker import reaper

log = logging.getLogger(__name__)
_stop = threading.Event()
_thread: threading.Thread | None = None


@lru_cache
def worker_id() -> str:
    """The worker process's id: its Celery queue's name, and the host of its slots."""
    return get_settings().worker_id or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class OwnSlot:
    slot_id: str
    gpu_index: int | None  # None: the one slot of a worker without TUNEPOOL_GPUS (CUDA_VISIBLE_DEVICES decides)


def own_slots() -> list[OwnSlot]:
    """This process's slots: itself when it owns one GPU (as before slots existed), else one per listed GPU."""
    indices = get_settings().gpu_indices
    if len(indices) <= 1:
        return [OwnSlot(worker_id(), indices[0] if indices else None)]
    return [OwnSlot(f"{worker_id()}-gpu{i}", i) for i in indices]


def gpu_info(index: int | None = None) -> dict[str, Any]:
    """GPU name and memory via nvidia-smi: the parent never imports torch, so CUDA stays the child's."""
    if get_settings().device == "cpu" or not shutil.which("nvidia-smi"):
        return {"device": "cpu", "gpu_name": None, "gpu_memory_total": None, "gpu_memory_free": None}
    gpu = str(index) if index is not None else os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    try:
        out = (
            subprocess.run(
                [
                    "nvidia-smi",
                    f"--id={gpu}",
                    "--query-gpu=name,memory.total,memory.free,utilization.gpu",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.strip()
            .splitlines()[0]
        )
        name, total, free, util = (x.strip() for x in out.split(","))
        mib = 1024 * 1024
        return {
            "device": "cuda",
            "gpu_name": name,
            "gpu_memory_total": int(total) * mib,
            "gpu_memory_free": int(free) * mib,
            "gpu_utilization": float(util) if util.replace(".", "", 1).isdigit() else None,  # "[N/A]" on some
        }
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("nvidia-smi failed (%s); reporting CPU", exc)
        return {"device": "cpu", "gpu_name": None, "gpu_memory_total": None, "gpu_memory_free": None}


def consume_own_queue(consumer: Any) -> None:
    """Also take messages from this worker's own queue, where the dispatcher places the jobs it chose for us."""
    consumer.add_task_queue(worker_queue(worker_id()))


def beat() -> None:
    readings = [(slot, gpu_info(slot.gpu_index)) for slot in own_slots()]  # before the transaction: nvidia-smi
    with unit_of_work() as session:
        for slot, info in readings:
            workers.heartbeat(
                session,
                slot.slot_id,
                host_id=worker_id(),
                gpu_index=slot.gpu_index,
                hostname=get_settings().advertise_host or socket.gethostname(),  # peers' rendezvous address
                queue=gpu_queue(),
                **info,
            )


def _loop() -> None:
    period = get_settings().heartbeat_seconds
    while not _stop.is_set():
        try:
            beat()
        except Exception as exc:  # the database may be restarting; keep beating
            log.warning("heartbeat failed: %s", exc)
        _stop.wait(period)


def start() -> None:
    global _thread
    recovered = reaper.recover_restarted_worker(worker_id(), [s.slot_id for s in own_slots()])
    if recovered:
        log.warning("re-queued jobs this worker was running before it restarted: %s", recovered)
    beat()
    _thread = threading.Thread(target=_loop, name="heartbeat", daemon=True)
    _thread.start()


def stop() -> None:
    _stop.set()
    try:
        with unit_of_work() as session:
            workers.remove_host(session, worker_id())
    except Exception as exc:
        log.warning("could not deregister worker: %s", exc)
