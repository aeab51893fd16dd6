"""Failure classification: allocator failures become "out_of_memory" with a hint; codes say whose fault."""

from __future__ import annotations

import pytest
import torch

from worker.training.errors import TrainingError, is_out_of_memory, out_of_memory


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: out of memory"),
        MemoryError(),
        # cuBLAS failing to allocate its workspace inside a matmul (torch's message for the status).
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ],
)
def test_allocator_failures_are_out_of_memory(exc: BaseException) -> None:
    assert is_out_of_memory(exc)


def test_cuda_oom_class_is_recognised() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))


@pytest.mark.parametrize("exc", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("memory")])
def test_other_errors_are_not(exc: BaseException) -> None:
    assert not is_out_of_memory(exc)


def test_out_of_memory_error_gives_a_hint_and_blames_the_system() -> None:
    err = out_of_memory("training", step=12)

    assert err.code == "out_of_memory" and err.step == 12
    assert "batch_size" in err.message and "gradient_checkpointing" in err.message and "max_seq_length" in err.message
    assert err.side == "system"


def test_user_codes_blame_the_user() -> None:
    assert TrainingError("diverged", "NaN").side == "user"
    assert TrainingError("invalid_dataset", "bad").side == "user"
