"""Rules of the codebase, checked: lint, types, layering, and what the cold start imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff_clean() -> None:
    res = subprocess.run([BIN / "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_on_shared() -> None:
    res = subprocess.run([BIN / "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_shared_never_imports_azure_functions() -> None:
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("azure.functions")]
    assert offenders == []


def test_cold_start_imports_no_sdk_the_queue_path_needs() -> None:
    code = ("import sys, json, function_app; print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('twilio', 'jsonschema', 'aiohttp') or m.startswith("
            "('azure.identity', 'azure.keyvault', 'azure.storage', 'azure.data', 'shared')))))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert json.loads(res.stdout) == ["shared"]
