"""The worker's training switches come from its settings (TUNEPOOL_* variables) and reach the recipe as options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from worker.training.interfaces import TrainingOptions


def test_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    options = TrainingOptions.from_settings(Settings(data_dir=tmp_path))

    assert options == TrainingOptions(data_cache_dir=tmp_path / "work" / ".data-cache")


def test_environment_reaches_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATA_CACHE_DIR": str(tmp_path / "cache"),
        "MEMORY_BUDGET_GIB": "1.5",
        "ATTENTION": "Eager",
        "LIGER": "0",
        "TF32": "0",
        "OPTIM": "adamw_torch_fused",
        "OFFLOAD": "false",
        "INJECT_OOM_TOKENS": "256",
    }.items():
        monkeypatch.setenv(f"TUNEPOOL_{name}", value)

    options = TrainingOptions.from_settings(Settings())

    assert options == TrainingOptions(
        data_cache_dir=tmp_path / "cache",
        memory_budget_gib=1.5,
        attention="eager",
        liger="0",
        tf32=False,
        optimizer="adamw_torch_fused",
        activation_offloading=False,
        inject_oom_tokens=256,
    )


@pytest.mark.parametrize(("name", "value"), [("LIGER", "sometimes"), ("MEMORY_BUDGET_GIB", "0"), ("TF32", "maybe")])
def test_bad_switch_is_refused_naming_it(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"TUNEPOOL_{name}", value)

    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_interfaces_import_no_training_stack() -> None:
    # At run time, package __init__ included (import-linter sees only the modules' own imports).
    code = "import sys, worker.training.interfaces, worker.outcome; print({'torch', 'transformers'} & set(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "set()"
