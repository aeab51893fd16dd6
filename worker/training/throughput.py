"""The recipe's speed and memory decisions in one place: cached data prep, packing, the batch plan, kernels, OOM
back-off. Each call is one line in recipe.py; the logic lives in packing, autosize, kernels, datacache, backoff."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc

from core.schemas.spec import JobSpec
from worker.training import autosize, datacache, kernels, packing
from worker.training.backoff import OomBackoff
from worker.training.data import TokenizedData
from worker.training.interfaces import Reporter, TrainingOptions, TrainingPaths

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
    from trl import SFTConfig


@dataclass
class Tuning:
    """What was chosen for this run (shown on the job and written to tunepool.json)."""

    plan: autosize.BatchPlan
    kernels: kernels.KernelChoice
    data_prep_s: float
    data_cache_hit: bool
    backoff: OomBackoff | None = None  # set once training starts; records OOM splits

    def as_dict(self) -> dict[str, Any]:
        """Flat plain values for events and manifests, including any out-of-memory back-off so far."""
        data = {
            **self.plan.as_dict(),
            **self.kernels.as_dict(),
            "data_prep_s": self.data_prep_s,
            "data_cache_hit": self.data_cache_hit,
            "micro_batch_splits": 0,
        }
        if self.backoff is not None and (self.backoff.splits or self.backoff.checkpointing_enabled):
            data["micro_batch_splits"] = self.backoff.splits
            data["gradient_checkpointing"] = self.backoff.checkpointing_enabled
        return data


@dataclass
class PreparedData:
    train: TokenizedData
    valid: TokenizedData | None
    seconds: float
    cache_hit: bool


def load_data(
    paths: TrainingPaths,
    tokenizer: PreTrainedTokenizerBase,
    max_len: int,
    reporter: Reporter,
    cache_dir: Path | None = None,
) -> PreparedData:
    """Tokenise (or load from the content-hash cache) the train and validation files; report the time it took."""
    # Without a configured cache, one beside the job's work dir (shared by the jobs of one work dir).
    root = cache_dir or paths.output_dir.parent.parent / ".data-cache"
    started = time.perf_counter()
    train, hit = datacache.load_cached(paths.train_file, tokenizer, paths.base_model, max_len, root)
    valid = None
    if paths.valid_file:
        valid, valid_hit = datacache.load_cached(paths.valid_file, tokenizer, paths.base_model, max_len, root)
        hit = hit and valid_hit
    seconds = round(time.perf_counter() - started, 3)
    reporter.event(
        f"Prepared data in {seconds:.2f}s ({'cache hit' if hit else 'tokenised'})",
        {"data_prep_s": seconds, "data_cache_hit": hit},
    )
    return PreparedData(train, valid, seconds, hit)


def lengths(data: TokenizedData) -> list[int]:
    """Token count of every example."""
    column = data.dataset.data.column("input_ids")
    return [int(n) for n in pc.list_value_length(column).to_pylist()]


def tune(
    spec: JobSpec,
    model: Any,
    data: PreparedData,
    args: SFTConfig,
    *,
    device: str,
    default_optimizer: str,
    reporter: Reporter,
    resume_from: Path | None = None,
    options: TrainingOptions = TrainingOptions(),
    world_size: int = 1,
) -> tuple[SFTConfig, Tuning]:
    """Choose packing, the batch plan and the kernels for this run; return the SFTConfig that carries them out.

    With `world_size` ranks, batch_size is the examples of a step on all of them together: each rank plans
    its share (the Trainer's sampler deals each rank disjoint examples of every step)."""
    t = spec.training
    example_lengths = lengths(data.train)
    pack = packing.should_pack(t.packing, example_lengths)
    choice = kernels.choose(device, default_optimizer, t.memory_mode, options)
    plan = autosize.measure_and_plan(
        model=model,
        device=device,
        lengths=example_lengths,
        max_seq_length=t.max_seq_length,
        effective_examples=spec.hyperparameters.batch_size * t.gradient_accumulation_steps,
        packing=pack,
        checkpointing=t.gradient_checkpointing,
        memory_mode=t.memory_mode,
        lora_rank=spec.lora.r,
        lora_targets=spec.lora.module_list(),
        budget_gib=options.memory_budget_gib,
        attention=choice.attention,
        world_size=world_size,
    )
    resumed_micro = _checkpoint_micro_batch(resume_from)
    if resumed_micro is not None:
        # The Trainer resumes mid-epoch by skipping micro-batches: they must be the size they were.
        plan = autosize.with_micro_batch(plan, resumed_micro, "kept from the checkpoint resumed")
    kernels.apply_tf32(choice)
    if choice.liger:
        kernels.apply_liger(model)
    tuning = Tuning(plan, choice, data.seconds, data.cache_hit)
    overrides = {
        **autosize.sft_overrides(plan),
        **packing.sft_packing_args(pack),
        "optim": choice.optimizer,
        "activation_offloading": choice.activation_offloading,
        "tf32": choice.tf32 or None,
    }
    args = dataclasses.replace(args, **overrides)
    ranks = f" on each of {world_size} ranks" if world_size > 1 else ""
    reporter.event(
        f"Batch plan: {plan.micro_batch} × {plan.row_tokens} tokens per micro-batch{ranks}, {plan.accumulation} "
        f"accumulation step(s), checkpointing {'on' if plan.gradient_checkpointing else 'off'}, "
        f"packing {'on' if pack else 'off'}, attention {plan.as_dict()['attention_label']}, planned peak "
        f"{plan.planned_peak_bytes / autosize.GIB:.2f} GiB, Liger {'on' if choice.liger else 'off'}",
        tuning.as_dict(),
    )
    return args, tuning


def _checkpoint_micro_batch(checkpoint: Path | None) -> int | None:
    """The micro-batch a checkpoint was trained with (its trainer_state.json), if any."""
    state = checkpoint / "trainer_state.json" if checkpoint else None
    if state is None or not state.is_file():
        return None
    value = json.loads(state.read_text()).get("train_batch_size")
    return int(value) if value else None


def install_backoff(trainer: Any, reporter: Reporter, tuning: Tuning, inject_oom_tokens: int | None = None) -> None:
    """Split micro-batches that run out of memory instead of failing the job."""
    tuning.backoff = OomBackoff(trainer, reporter.event, inject_oom_tokens)


def release_backoff(tuning: Tuning) -> None:
    """Hand the trainer its own training step back and drop the back-off's hold on it (its counts stay)."""
    if tuning.backoff is not None:
        tuning.backoff.release()
