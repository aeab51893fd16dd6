"""The training command for one process, one host's GPUs and several hosts; and torchrun reads it as meant."""

from __future__ import annotations

import sys
from pathlib import Path

from worker.launch import Rendezvous, rendezvous_port, training_command


def test_one_process_needs_no_launcher() -> None:
    assert training_command("ftjob-1", Path("/w"), 3, 1) == [
        sys.executable,
        "-m",
        "worker.job_process",
        "ftjob-1",
        "/w",
        "3",
    ]


def _torchrun_args(cmd: list[str]) -> object:
    from torch.distributed.run import get_args_parser

    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    return get_args_parser().parse_args(cmd[3:])


def test_one_host_uses_a_standalone_rendezvous() -> None:
    args = _torchrun_args(training_command("ftjob-1", Path("/w"), 2, 4))
    assert args.standalone and args.nproc_per_node == "4" and args.max_restarts == 0  # type: ignore[attr-defined]
    assert args.module and args.training_script == "worker.job_process"  # type: ignore[attr-defined]
    assert args.training_script_args == ["ftjob-1", "/w", "2"]  # type: ignore[attr-defined]


def test_several_hosts_meet_at_node_0_which_says_it_hosts() -> None:
    leader = Rendezvous(nodes=2, endpoint="10.0.0.5:29517", run_id="ftjob-1-2", is_host=True, join_timeout_s=300)
    follower = Rendezvous(nodes=2, endpoint="10.0.0.5:29517", run_id="ftjob-1-2", is_host=False, join_timeout_s=300)
    for rdzv, host in ((leader, "1"), (follower, "0")):
        args = _torchrun_args(training_command("ftjob-1", Path("/w"), 2, 8, rdzv))
        assert not args.standalone and args.nnodes == "2" and args.nproc_per_node == "8"  # type: ignore[attr-defined]
        assert args.rdzv_backend == "c10d" and args.rdzv_endpoint == "10.0.0.5:29517"  # type: ignore[attr-defined]
        assert args.rdzv_id == "ftjob-1-2" and args.rdzv_conf == f"is_host={host},join_timeout=300"  # type: ignore[attr-defined]


def test_each_attempt_meets_on_its_own_port() -> None:
    ports = {rendezvous_port(29400, "ftjob-1", attempt) for attempt in range(1, 6)}
    assert len(ports) == 5 and all(29400 <= p < 30400 for p in ports)
    assert rendezvous_port(29400, "ftjob-1", 1) == rendezvous_port(29400, "ftjob-1", 1)  # every node agrees
