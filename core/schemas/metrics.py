"""One logged training step, as the trainer reports it and the API serves it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StepMetrics(BaseModel):
    """Metrics of one logged optimizer step; None where the trainer did not log that value."""

    # Served whole, so the response schema lists every field as present (null where not logged).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    step: int
    total_steps: int
    train_loss: float | None = None
    grad_norm: float | None = None
    learning_rate: float | None = None
    epoch: float | None = None
    tokens: int | None = None  # non-padding tokens seen so far
    tokens_per_s: float | None = None  # measured by the recipe over the last logging window
    valid_loss: float | None = None
    mean_token_accuracy: float | None = None
    # DPO (TRL's rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies; valid_*: at evaluation).
    rewards_chosen: float | None = None
    rewards_rejected: float | None = None
    rewards_margins: float | None = None
    rewards_accuracies: float | None = None
    valid_rewards_chosen: float | None = None
    valid_rewards_rejected: float | None = None
    valid_rewards_margins: float | None = None
    valid_rewards_accuracies: float | None = None
