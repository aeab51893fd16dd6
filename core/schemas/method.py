"""The training method beyond supervised: DPO's knobs, and the adapter a continued job starts from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BETA = 0.1  # OpenAI's and TRL's default
# TRL 1.16's DPOConfig.loss_type values (trl/trainer/dpo_config.py); "sft" is reached through rpo_alpha.
DpoLossType = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
]
MethodType = Literal["supervised", "dpo"]


class DpoOptions(BaseModel):
    """tunepool's `dpo` extension: TRL's loss variants (Together exposes the same)."""

    model_config = ConfigDict(extra="forbid")

    loss_type: DpoLossType = Field(default="sigmoid", description="TRL DPOConfig.loss_type; sigmoid is DPO.")
    rpo_alpha: Annotated[float, Field(gt=0, le=100)] | None = Field(
        default=None,
        description="RPO: add the chosen answers' NLL loss with this weight (TRL: an 'sft' loss and loss_weights).",
    )


class DpoSpec(DpoOptions):
    """What the DPO trainer takes besides the shared hyperparameters."""

    beta: float = Field(default=DEFAULT_BETA, gt=0, le=100, description="Deviation penalty from the reference.")


class ParentAdapter(BaseModel):
    """The fine-tune or checkpoint a job continues: its adapter is loaded onto the base and trained further."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The parent's name: ft:… or ft:…:ckpt-step-N.")
    job_id: str
    step: int | None = Field(default=None, description="The checkpoint's step; None: the finished fine-tune.")
    artifact_id: str = Field(description="The archive the worker unpacks: the adapter, or the checkpoint.")
    chain: list[str] = Field(description="Lineage from the parent back to the base model, parent first.")
