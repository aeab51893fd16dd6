"""`tunepool jobs metrics --plot`: train/valid loss and grad-norm against step, as a PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_metrics(points: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Loss (train line, valid markers) on top, grad-norm below; shared step axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        rows = [(p["step"], p[key]) for p in points if p.get(key) is not None]
        return [s for s, _ in rows], [v for _, v in rows]

    fig, (loss_ax, grad_ax) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), height_ratios=(2, 1))
    loss_ax.plot(*series("train_loss"), label="train loss", linewidth=1.2)
    steps, valid = series("valid_loss")
    if valid:
        loss_ax.plot(steps, valid, "o-", label="valid loss", markersize=4)
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)
    grad_ax.plot(*series("grad_norm"), color="tab:green", linewidth=1.0)
    grad_ax.set_ylabel("grad norm")
    grad_ax.set_xlabel("step")
    grad_ax.grid(alpha=0.3)
    if title:
        loss_ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
