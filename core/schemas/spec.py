"""The per-job training spec: documented, bounded, stored on the job row as JSON.

Every model forbids unknown fields so a typo is a 400 naming the field, not a silently ignored knob.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.enums import QuantizationMode
from core.schemas.method import DpoSpec, MethodType, ParentAdapter

DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 4
DEFAULT_SEED = 42
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Strict):
    """OpenAI's hyperparameters; "auto" is resolved when the job is created."""

    n_epochs: Literal["auto"] | Annotated[int, Field(ge=1, le=50)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1, le=256)] = "auto"
    learning_rate_multiplier: Literal["auto"] | Annotated[float, Field(gt=0, le=100)] = "auto"


class ResolvedHyperparameters(_Strict):
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


class LoraSpec(_Strict):
    r: int = Field(default=16, ge=1, le=1024, description="Adapter rank.")
    alpha: float = Field(default=32, gt=0, le=4096, description="Scaling: output += (alpha/r)·BA·x.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: Literal["attention", "all-linear"] | list[str] = Field(
        default="all-linear", description='"attention" (q,k,v,o), "all-linear", or explicit module names.'
    )

    @field_validator("target_modules")
    @classmethod
    def _check_modules(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("must name at least one module")
            bad = [m for m in v if not _MODULE_NAME.match(m)]
            if bad:
                raise ValueError(f"not module names: {bad}")
        return v

    def module_list(self) -> str | list[str]:
        """What PEFT's LoraConfig takes: a list of names or the "all-linear" shorthand."""
        if self.target_modules == "attention":
            return list(ATTENTION_MODULES)
        return self.target_modules


class QuantizationSpec(_Strict):
    """QLoRA by default: NF4 base, double quantisation, 16-bit compute."""

    mode: QuantizationMode = QuantizationMode.NF4
    double_quant: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"


class EarlyStopping(_Strict):
    """Stop when the validation loss has not improved by `min_delta` for `patience` evaluations; publish the best."""

    patience: int = Field(default=2, ge=1, le=1000, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0, le=100, description="Smallest drop that counts as improvement.")


class TrainingSpec(_Strict):
    max_seq_length: int = Field(default=2048, ge=16, le=131072, description="Longer examples are truncated.")
    learning_rate: float = Field(
        default=DEFAULT_LEARNING_RATE, gt=0, le=1, description="Before the multiplier."
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = (
        "linear"
    )
    warmup_ratio: float = Field(default=0.03, ge=0, le=0.5)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024)
    gradient_checkpointing: bool | None = Field(
        default=None, description="None: chosen from the GPU's free memory (see worker/training/autosize.py)."
    )
    packing: bool | None = Field(
        default=None, description="Pack examples into full-length rows; None: when padding would waste >5%."
    )
    memory_mode: Literal["auto", "min"] = Field(
        default="auto",
        description='"auto": the fastest batch plan that fits the GPU; "min": smallest footprint (micro-batch 1, '
        "gradient checkpointing, paged 8-bit AdamW) for small GPUs.",
    )
    parallelism: Literal["auto", "ddp", "fsdp"] = Field(
        default="auto",
        description='With resources.gpus > 1: "ddp" (a full copy per GPU), "fsdp" (the model sharded across GPUs), '
        '"auto" (ddp when the model fits one GPU, else fsdp).',
    )
    max_steps: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Stop after this many steps."
    )
    logging_steps: int = Field(default=1, ge=1, le=100_000)
    eval_every_steps: int | None = Field(default=None, ge=1, description="Default: once per epoch.")
    save_every_steps: int | None = Field(default=None, ge=1, description="Adapter checkpoint cadence.")
    early_stopping: EarlyStopping | None = Field(
        default=None,
        description="Off by default; on (patience 2) when n_epochs is auto and there is a validation file. "
        "Needs a validation_file.",
    )
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list,
        max_length=3,
        description="Experiment trackers for TRL to log to, each used only if its package is on the worker.",
    )


def _unstated(value: object) -> bool:
    # A limit the user left out is absent from the dump, not null: the job row and its JSON echo what was asked.
    return value is None


def _one_gpu(value: object) -> bool:
    return value == 1


class ResourceSpec(_Strict):
    """What a job needs from its GPUs; omitted: one GPU, its memory estimated from the model and spec.
    `min_gpu_memory_gb` and `gpu_type` are per GPU."""

    gpus: int = Field(
        default=1,
        ge=1,
        le=64,
        description="GPUs the job trains on at once, all on one host (placed together or not at all).",
        exclude_if=_one_gpu,
    )

    min_gpu_memory_gb: float | None = Field(
        default=None, gt=0, le=10_000, description="Decimal GB.", exclude_if=_unstated
    )
    gpu_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description='Matched within the GPU name, e.g. "A100".',
        exclude_if=_unstated,
    )


ArtifactName = Literal["adapter", "merged"]
DEFAULT_ARTIFACTS: tuple[ArtifactName, ...] = ("adapter", "merged")


class JobSpec(_Strict):
    """Everything the trainer needs besides paths: stored whole on the job row."""

    hyperparameters: ResolvedHyperparameters
    lora: LoraSpec = LoraSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    training: TrainingSpec = TrainingSpec()
    artifacts: list[ArtifactName] = Field(default_factory=lambda: list(DEFAULT_ARTIFACTS))
    seed: int = Field(default=DEFAULT_SEED, ge=0, le=2**31 - 1)
    method: MethodType = "supervised"
    dpo: DpoSpec | None = None  # set when method is "dpo"
    parent: ParentAdapter | None = None  # set when the job continues a fine-tune or checkpoint

    @property
    def learning_rate(self) -> float:
        return self.training.learning_rate * self.hyperparameters.learning_rate_multiplier

    @model_validator(mode="after")
    def _artifacts_unique(self) -> JobSpec:
        if not self.artifacts:
            raise ValueError("artifacts: ask for at least one of adapter, merged")
        self.artifacts = list(dict.fromkeys(self.artifacts))
        return self
