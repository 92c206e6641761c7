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


def imports(*paths: str) -> list[tuple[str, str]]:
    """(file, module) for every import in the files or folders given."""
    out = []
    for given in paths:
        files = [ROOT / given] if given.endswith(".py") else sorted((ROOT / given).rglob("*.py"))
        for path in files:
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                out += [(str(path.relative_to(ROOT)), n) for n in names]
    return out


def test_shared_never_imports_azure_functions() -> None:
    assert [i for i in imports("shared") if i[1].startswith("azure.functions")] == []


def test_the_operator_tools_do_not_depend_on_the_local_host() -> None:
    assert [i for i in imports("ops") if i[1].split(".")[0] == "devhost"] == []


# What a deployment holds (func azure functionapp publish and azd both honour .funcignore).
DEPLOYED = ("function_app.py", "host.json", "requirements.txt", "triggers/", "shared/")
# What a local run, the tests and an editor leave beside the tracked files.
LOCAL_ARTIFACTS = (".venv/bin/python", ".venv-checkov/bin/checkov", "node_modules/.stamp",
                   "shared/__pycache__/jobs.cpython-311.pyc", "local.settings.json",
                   ".devhost/azurite.log", ".azurite/__queuestorage__", ".azure/dev/.env",
                   "bench/results/run.json", ".pytest_cache/README.md", ".mypy_cache/x.json",
                   ".ruff_cache/x", ".hypothesis/x", ".vscode/settings.json")


def test_funcignore_leaves_exactly_the_app() -> None:
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text().splitlines())
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    kept = sorted(f for f in {*tracked, *LOCAL_ARTIFACTS} if not spec.match_file(f))
    app = sorted(f for f in tracked if f.startswith(DEPLOYED) and "__pycache__" not in f)
    assert kept == app
    assert {f.split("/")[0] for f in kept} == {d.rstrip("/") for d in DEPLOYED}


def test_the_deployed_code_imports_nothing_that_is_not_deployed() -> None:
    local = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    deployed = {d.rstrip("/") for d in DEPLOYED if d.endswith("/")}
    assert local - deployed >= {"ops", "devhost", "bench", "tests"}
    found = imports("function_app.py", *deployed)
    assert [i for i in found if i[1].split(".")[0] in local - deployed] == []


def test_cold_start_imports_no_sdk_the_queue_path_needs() -> None:
    code = ("import sys, json, function_app; print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('twilio', 'jsonschema', 'aiohttp') or m.startswith("
            "('azure.identity', 'azure.keyvault', 'azure.storage', 'azure.data', 'shared')))))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert json.loads(res.stdout) == ["shared"]


def test_every_logger_of_the_app_masks_numbers() -> None:
    """Log lines go to Application Insights: every app module takes its logger from
    shared.redaction (phone numbers masked, Account SIDs cut), never logging.getLogger."""
    found = []
    for path in sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "triggers").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "getLogger" and path.name != "redaction.py":
                target = ast.unparse(node)
                # Setting a library's level is not logging through it.
                if "azure.core" not in target:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {target}")
    assert found == []
