"""`tunepool jobs metrics --plot`: train/valid loss and grad-norm (DPO: reward margin and accuracy) against step."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plot_rewards(ax: Any, series: Any) -> None:
    """DPO: reward margin (left axis) and reward accuracy (right axis, 0–1), train lines and valid markers."""
    ax.plot(*series("rewards_margins"), label="reward margin", color="tab:purple", linewidth=1.2)
    steps, valid = series("valid_rewards_margins")
    if valid:
        ax.plot(steps, valid, "o", color="tab:purple", markersize=4, label="valid margin")
    ax.set_ylabel("reward margin")
    ax.grid(alpha=0.3)
    accuracy = ax.twinx()
    accuracy.plot(*series("rewards_accuracies"), color="tab:orange", linewidth=1.0, label="reward accuracy")
    accuracy.set_ylim(-0.05, 1.05)
    accuracy.set_ylabel("reward accuracy")
    ax.legend(loc="upper left")
    accuracy.legend(loc="lower right")


def plot_metrics(points: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Loss (train line, valid markers) on top, grad-norm below; shared step axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        rows = [(p["step"], p[key]) for p in points if p.get(key) is not None]
        return [s for s, _ in rows], [v for _, v in rows]

    dpo = any(p.get("rewards_margins") is not None for p in points)  # DPO: a third panel for the rewards
    rows, ratios = (3, (2, 1, 2)) if dpo else (2, (2, 1))
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(8, 3 * rows), height_ratios=ratios)
    loss_ax, grad_ax = axes[0], axes[1]
    loss_ax.plot(*series("train_loss"), label="train loss", linewidth=1.2)
    steps, valid = series("valid_loss")
    if valid:
        loss_ax.plot(steps, valid, "o-", label="valid loss", markersize=4)
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)
    grad_ax.plot(*series("grad_norm"), color="tab:green", linewidth=1.0)
    grad_ax.set_ylabel("grad norm")
    grad_ax.grid(alpha=0.3)
    if dpo:
        _plot_rewards(axes[2], series)
    axes[-1].set_xlabel("step")
    if title:
        loss_ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
