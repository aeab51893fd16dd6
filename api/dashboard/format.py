"""Jinja filters: timestamps, sizes, durations, ETAs in the words a person reads."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def when(ts: int | None) -> str:
    """A Unix time as `2026-11-28 14:05 UTC` ('—' when unset)."""
    if not ts:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def eta(ts: int | None) -> str:
    """Time left until a Unix time, e.g. 'ETA 3m 05s'."""
    if not ts:
        return ""
    return f"ETA {duration(max(0, ts - time.time()))}"


def number(x: float | None, digits: int = 4) -> str:
    """A metric with `digits` significant digits; exponents only for tiny or huge values."""
    if x is None:
        return "—"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e9):
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 10 ** (digits - 1) or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"
