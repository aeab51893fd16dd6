"""The recipe in a torchrun job of 2 CPU processes (gloo): the same training as one process, one stop for all ranks,
rank 0 alone reporting, and the refusals of what the stack cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.worker.training.helpers import RecordingReporter, SpecFactory, varied_rows, write_jsonl
from worker.training import TrainingError, TrainingPaths, config, distributed, run_training

ROOT = Path(__file__).resolve().parents[3]
RANKS = 2
# Float32 on one CPU: the two runs differ only in the order of sums (each rank's token sum, then the all-reduce),
# about 1e-7 of the loss (measured: ≤ 5e-7 after 3 steps). A step at lr 1e-2 moves the loss by ~0.1; training on
# the wrong examples (a rank on the other's share, or on all of them) moves it by more than 1e-3.
LOSS_TOLERANCE = 1e-5


def _spec(make_spec: SpecFactory, **training: Any) -> Any:
    return make_spec(epochs=1, batch_size=4, training={"parallelism": "ddp", "max_steps": 3, **training})


def torchrun(
    tmp_path: Path,
    spec: Any,
    model: Path,
    train: Path,
    pause_at_step: int | None = None,
    resume: Path | None = None,
    device: str = "cpu",
) -> list[Any]:
    """Run tests.support.distributed_run in RANKS processes (gloo on the CPU); the record of each rank, rank 0
    first."""
    run = {
        "device": device,
        "resume_from": str(resume) if resume else None,
        "spec": spec.model_dump(mode="json"),
        "base_model": str(model),
        "train_file": str(train),
        "output_dir": str(tmp_path / "out"),
        "record_dir": str(tmp_path / "records"),
        "pause_at_step": pause_at_step,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "run.json").write_text(json.dumps(run))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={RANKS}"]
    done = subprocess.run(
        [*cmd, "-m", "tests.support.distributed_run", str(tmp_path / "run.json")],
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,  # a rank stuck in a collective fails the test instead of hanging it
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((tmp_path / "records" / f"rank-{r}.json").read_text()) for r in range(RANKS)]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Examples of different lengths: each step's examples are visible in its token count.
    return write_jsonl(tmp_path_factory.mktemp("ddp") / "train.jsonl", varied_rows("chat", n=16))


def test_two_ranks_train_as_one_process_with_the_same_batch(
    tiny_model: Path, train_file: Path, make_spec: SpecFactory, tmp_path: Path
) -> None:
    spec = _spec(make_spec)
    alone = RecordingReporter()
    run_training(spec, TrainingPaths(tiny_model, train_file, None, tmp_path / "alone"), alone, device="cpu")

    main, other = torchrun(tmp_path / "ddp", spec, tiny_model, train_file)

    assert main["outcome"] == other["outcome"] == "succeeded"
    assert [s["step"] for s in main["steps"]] == [m.step for m in alone.steps] == [1, 2, 3]
    for ddp, one in zip(main["steps"], alone.steps, strict=True):
        assert ddp["train_loss"] == pytest.approx(one.train_loss, abs=LOSS_TOLERANCE)
        # Each rank trained a disjoint half of the same 4 examples: together exactly the single run's tokens.
        assert (ddp["tokens"], ddp["epoch"]) == (one.tokens, one.epoch)
    assert main["steps"][-1]["train_loss"] < main["steps"][0]["train_loss"]
    plan = main["batching"]
    assert (plan["world_size"], plan["micro_batch_per_rank"] * plan["accumulation"], plan["examples_per_step"]) == (
        RANKS,
        2,
        4,
    )
    assert other["steps"] == [] and other["events"] == []  # rank 1 reported nothing
    assert other["polls"] == 1 + 3  # it still took part in every step's stop decision (train begin + 3 steps)


def test_a_pause_on_rank_0_stops_both_ranks_at_the_same_step_and_both_resume(
    tiny_model: Path, train_file: Path, make_spec: SpecFactory, tmp_path: Path
) -> None:
    spec = _spec(make_spec, max_steps=5, save_every_steps=100)
    main, other = torchrun(tmp_path / "paused", spec, tiny_model, train_file, pause_at_step=1)

    assert main["outcome"] == other["outcome"] == "paused"
    paused = main["step"]
    assert other["step"] == paused < 5
    saved = [e for e in main["events"] if e.startswith("checkpoint ")]
    # The checkpoint to resume from holds both ranks' RNG states: it was copied once both had written.
    assert len(saved) == 1 and saved[0].startswith(f"checkpoint {paused}:")
    assert "rng_state_0.pth" in saved[0] and "rng_state_1.pth" in saved[0]

    checkpoint = tmp_path / "paused" / "out" / "trainer" / f"checkpoint-{paused}"
    main, other = torchrun(tmp_path / "resumed", spec, tiny_model, train_file, resume=checkpoint)

    assert main["outcome"] == other["outcome"] == "succeeded"
    assert [s["step"] for s in main["steps"]] == list(range(paused + 1, 6))


def test_dpo_trains_on_two_ranks(tiny_model: Path, tmp_path: Path) -> None:
    pairs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Capital of country {i}?"}]},
            "preferred_output": [{"role": "assistant", "content": "A short, direct answer."}],
            "non_preferred_output": [{"role": "assistant", "content": "I refuse to answer that question."}],
        }
        for i in range(4)
    ]
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=1, batch_size=2, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        quantization={"mode": "none"},
        training={"learning_rate": 5e-3, "max_seq_length": 64, "warmup_ratio": 0.0, "parallelism": "ddp"},
        artifacts=["adapter"],
        method="dpo",
    )
    main, other = torchrun(tmp_path, spec, tiny_model, write_jsonl(tmp_path / "pairs.jsonl", pairs))

    assert main["outcome"] == other["outcome"] == "succeeded", main.get("message")
    # 4 pairs at batch_size 2 over 2 ranks: one pair per rank per step, 2 steps to the epoch.
    assert [(s["step"], s["epoch"]) for s in main["steps"]] == [(1, 0.5), (2, 1.0)]
    assert main["steps"][-1]["rewards_accuracies"] is not None
    assert any(e.startswith("Saving adapter") for e in main["events"]) and other["events"] == []


@pytest.fixture
def as_rank_0_of_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as torchrun's rank 0 of 2 (the refusals come before the process group is joined)."""
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": str(RANKS)}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("as_rank_0_of_2")
@pytest.mark.parametrize(
    ("batch_size", "parallelism", "code", "named"),
    [
        (3, "ddp", "invalid_batch_size", "hyperparameters.batch_size=3"),
        (4, "fsdp", "unsupported_parallelism", 'training.parallelism "fsdp"'),
    ],
)
def test_what_cannot_run_on_the_ranks_is_refused(
    tiny_model: Path, train_file: Path, make_spec: SpecFactory, tmp_path: Path, batch_size: int,
    parallelism: str, code: str, named: str,
) -> None:  # fmt: skip
    spec = make_spec(epochs=1, batch_size=batch_size, training={"parallelism": parallelism})
    with pytest.raises(TrainingError) as caught:
        run_training(spec, TrainingPaths(tiny_model, train_file, None, tmp_path / "out"), RecordingReporter(), "cpu")

    assert caught.value.code == code and named in caught.value.message
    assert caught.value.side == "user"


def test_fsdp_stores_4bit_weights_in_the_compute_dtype_and_wraps_each_decoder_layer(make_spec: SpecFactory) -> None:
    spec = make_spec(quantization={"mode": "nf4"})
    sharded, plain = config.bnb_config(spec, "cpu", sharded=True), config.bnb_config(spec, "cpu")
    assert sharded is not None and plain is not None
    assert (sharded.bnb_4bit_quant_storage, plain.bnb_4bit_quant_storage) == (torch.float32, torch.uint8)
    fsdp = distributed.trainer_arguments("fsdp", "cuda:1")
    assert fsdp["ddp_backend"] == "nccl" and fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["version"] == 2 and fsdp["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert distributed.trainer_arguments("ddp", "cpu") == {"ddp_backend": "gloo", "ddp_find_unused_parameters": False}


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < RANKS, reason=f"needs {RANKS} CUDA GPUs")
@pytest.mark.parametrize(("parallelism", "quantization"), [("ddp", "nf4"), ("fsdp", "none"), ("fsdp", "nf4")])
def test_two_gpus_train_with_ddp_and_fsdp(
    tiny_model: Path, train_file: Path, make_spec: SpecFactory, tmp_path: Path, parallelism: str, quantization: str
) -> None:
    spec = make_spec(
        epochs=1, batch_size=4, quantization={"mode": quantization},
        training={"parallelism": parallelism, "max_steps": 3},
    )  # fmt: skip
    main, other = torchrun(tmp_path, spec, tiny_model, train_file, device="auto")

    assert main["outcome"] == other["outcome"] == "succeeded", main.get("message")
    assert any(f"{parallelism} over {RANKS} ranks" in e for e in main["events"])
    assert [s["step"] for s in main["steps"]] == [1, 2, 3]
    assert any(e.startswith("Saving adapter") for e in main["events"])
