"""Pre-flight advice on a job's spec and data size (the seed's LoRA failure cases), before any GPU is spent.

Pure and torch-free: the API calls it at creation; the worker adds the warnings that need tokenisation
(truncation, examples with no trainable token, validation overlapping training) in worker/training/preflight.py.
A warning never refuses a job: it says what is likely to go wrong and what to change.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from core.schemas.spec import ATTENTION_MODULES, Hyperparameters, JobSpec, ResolvedHyperparameters

MAX_ALPHA_RATIO = 2.0  # seed: alpha = r or 2r; larger scales amplify early gradients
SMALL_DATASET = 500  # seed: fewer examples than this overfit a high-rank adapter
MAX_RANK_FOR_SMALL_DATA = 16
MLP_MODULES = ("gate_proj", "up_proj", "down_proj", "fc1", "fc2", "mlp")
# OpenAI's "auto" epochs: aim at about 3 epochs, but see at least 100 and at most 25,000 examples in total.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES, MAX_AUTO_EPOCHS = 3, 100, 25_000, 25
# "auto" batch: about 0.2% of the examples, between these bounds.
AUTO_BATCH_FRACTION, MIN_AUTO_BATCH, MAX_AUTO_BATCH = 0.002, 4, 256


class JobWarning(BaseModel):
    """One piece of advice on the job object: a stable code, what to do, the parameter it concerns."""

    code: str
    message: str
    param: str | None = None


def resolve_auto(
    h: Hyperparameters, train_examples: int, gpus: int = 1
) -> tuple[ResolvedHyperparameters, list[JobWarning]]:
    """Resolve "auto" from the training set's size, as OpenAI does, with a note saying what was chosen and why; an
    automatic batch on several GPUs is a multiple of their number (each GPU takes an equal share of a step)."""
    notes: list[JobWarning] = []
    n = max(train_examples, 1)
    epochs = h.n_epochs
    if epochs == "auto":
        epochs = TARGET_EPOCHS
        if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
            epochs = min(MAX_AUTO_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n))
        elif n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
            epochs = max(1, MAX_TARGET_EXAMPLES // n)
        notes.append(
            JobWarning(
                code="auto_n_epochs",
                message=f"n_epochs auto: {epochs} for {train_examples} training examples (about {TARGET_EPOCHS} "
                f"epochs, but at least {MIN_TARGET_EXAMPLES} and at most {MAX_TARGET_EXAMPLES:,} examples seen in "
                "all).",
                param="hyperparameters.n_epochs",
            )
        )
    batch = h.batch_size
    if batch == "auto":
        chosen = min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, math.ceil(AUTO_BATCH_FRACTION * n)))
        shared = ""
        if chosen % gpus:
            chosen = math.ceil(chosen / gpus) * gpus
            shared = f", rounded up to a multiple of the job's {gpus} GPUs"
        notes.append(
            JobWarning(
                code="auto_batch_size",
                message=f"batch_size auto: {chosen} for {train_examples} training examples (0.2% of the examples, "
                f"between {MIN_AUTO_BATCH} and {MAX_AUTO_BATCH}{shared}).",
                param="hyperparameters.batch_size",
            )
        )
        batch = chosen
    lr = 1.0 if h.learning_rate_multiplier == "auto" else h.learning_rate_multiplier
    return ResolvedHyperparameters(n_epochs=epochs, batch_size=batch, learning_rate_multiplier=lr), notes


def spec_warnings(spec: JobSpec, train_examples: int, valid_examples: int | None) -> list[JobWarning]:
    """Advice on the LoRA settings for this much data; `valid_examples` is None without a validation file."""
    lora = spec.lora
    found: list[JobWarning] = []
    ratio = lora.alpha / lora.r
    if ratio > MAX_ALPHA_RATIO:
        found.append(
            JobWarning(
                code="alpha_rank_ratio",
                message=f"lora.alpha/r = {lora.alpha:g}/{lora.r} = {ratio:g}: scales above {MAX_ALPHA_RATIO:g} "
                "amplify early gradients and make the loss spike in the first steps. Keep alpha = r or alpha = 2r "
                f"(here {lora.r} or {2 * lora.r}); else lower the learning rate and clip gradients.",
                param="lora.alpha",
            )
        )
    if train_examples < SMALL_DATASET and lora.r > MAX_RANK_FOR_SMALL_DATA:
        found.append(
            JobWarning(
                code="rank_high_for_data",
                message=f"lora.r = {lora.r} for {train_examples} training examples: a high-rank adapter memorises "
                f"fewer than {SMALL_DATASET} examples. Reduce r to 4-8 and set lora.dropout to 0.1, or add examples.",
                param="lora.r",
            )
        )
    if _attention_only(lora.module_list()):
        found.append(
            JobWarning(
                code="attention_only_modules",
                message="lora.target_modules adapts attention projections only: format and structure can change, "
                'but style and domain knowledge need the MLP layers. Use "all-linear" (or add gate_proj, up_proj, '
                "down_proj) if the fine-tune is about style or facts.",
                param="lora.target_modules",
            )
        )
    if valid_examples is None and train_examples < SMALL_DATASET:
        found.append(
            JobWarning(
                code="no_validation_file",
                message=f"No validation_file for {train_examples} training examples: overfitting (training loss "
                "falling while validation loss climbs) cannot be seen, and early stopping cannot run. Hold out "
                "10-20% of the examples as a validation file.",
                param="validation_file",
            )
        )
    return found


def _attention_only(modules: str | list[str]) -> bool:
    """Whether explicit module names touch no MLP projection ("all-linear" covers the MLP)."""
    if isinstance(modules, str):
        return False
    names = [m.rsplit(".", 1)[-1] for m in modules]
    return all(n in ATTENTION_MODULES for n in names) and not any(m in n for n in names for m in MLP_MODULES)
