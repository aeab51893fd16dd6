"""DPOTrainer's reward logs → StepMetrics fields (torch-free, so the callbacks and tests share it)."""

from __future__ import annotations

_REWARDS = ("chosen", "rejected", "margins", "accuracies")


def reward_fields(logs: dict[str, float], *, evaluation: bool = False) -> dict[str, float]:
    """`rewards/margins` → `rewards_margins` (train log); `eval_rewards/margins` → `valid_rewards_margins`."""
    prefix, field = ("eval_", "valid_") if evaluation else ("", "")
    return {
        f"{field}rewards_{name}": logs[f"{prefix}rewards/{name}"]
        for name in _REWARDS
        if f"{prefix}rewards/{name}" in logs
    }
