"""Multi-GPU decisions the API and the worker share: the rank from torchrun's environment, ddp or fsdp, the batch
split, and the combinations refused up front."""

from __future__ import annotations

import pytest

from core.parallelism import Rank, batch_split_error, rank_from_env, resolve_strategy, unsupported_reason
from core.schemas.spec import JobSpec, ResolvedHyperparameters


def _spec(parallelism: str = "auto", method: str = "supervised") -> JobSpec:
    hyper = ResolvedHyperparameters(n_epochs=1, batch_size=4, learning_rate_multiplier=1.0)
    return JobSpec(hyperparameters=hyper, training={"parallelism": parallelism}, method=method)


def test_without_torchrun_a_process_trains_alone() -> None:
    assert rank_from_env({}) == Rank() and Rank().is_main and not Rank().distributed
    assert rank_from_env({"WORLD_SIZE": "1", "RANK": "0"}) == Rank()


def test_torchruns_environment_names_the_rank() -> None:
    rank = rank_from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert rank == Rank(rank=3, local_rank=1, world_size=4) and rank.distributed and not rank.is_main


@pytest.mark.parametrize(
    ("parallelism", "world", "fits", "strategy"),
    [
        ("auto", 1, False, "single"),
        ("fsdp", 1, True, "single"),
        ("auto", 2, True, "ddp"),
        ("auto", 2, False, "fsdp"),
        ("ddp", 4, False, "ddp"),
        ("fsdp", 2, True, "fsdp"),
    ],
)
def test_auto_shards_only_a_model_that_does_not_fit_one_gpu(
    parallelism: str, world: int, fits: bool, strategy: str
) -> None:
    assert resolve_strategy(parallelism, world, fits) == strategy


def test_a_batch_size_must_split_evenly_over_the_gpus() -> None:
    assert batch_split_error(8, 4) is None and batch_split_error(3, 1) is None
    message = batch_split_error(6, 4)
    assert message is not None and "hyperparameters.batch_size=6" in message and "resources.gpus=4" in message


def test_fsdp_is_refused_on_cpu_workers_and_for_dpo() -> None:
    assert unsupported_reason(_spec("fsdp"), "cpu", gpus=1) is None  # one process: nothing is sharded
    assert unsupported_reason(_spec("ddp"), "cpu", gpus=2) is None
    assert unsupported_reason(_spec("auto"), "cpu", gpus=2) is None  # auto on the CPU: ddp
    assert unsupported_reason(_spec("fsdp"), "cuda", gpus=2) is None
    assert unsupported_reason(_spec("ddp", "dpo"), "cuda", gpus=2) is None
    on_cpu = unsupported_reason(_spec("fsdp"), "cpu", gpus=2)
    assert on_cpu is not None and 'training.parallelism "fsdp"' in on_cpu and "GPUs" in on_cpu
    dpo = unsupported_reason(_spec("auto", "dpo"), "cuda", gpus=2, fits_one_gpu=False)
    assert dpo is not None and '"dpo"' in dpo and "training.parallelism" in dpo
