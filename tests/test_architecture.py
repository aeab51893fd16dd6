"""The import rules of STYLE.md, enforced: core ← db ← {api, worker}; no torch outside worker.training."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_test_module_imports_another() -> None:
    """Tests (and benches) share helpers through tests/support or a helper module, never a test_*.py or conftest.

    Importing a test module runs it twice under two names and ties one directory's tests to another's.
    """
    offenders = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                leaf = name.rsplit(".", 1)[-1]
                if name.startswith("tests.") and (leaf.startswith("test_") or leaf == "conftest"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
                    break
    assert not offenders, "\n".join(offenders)
