"""`scripts/bootstrap` after an install cut short, on a scratch copy of the repository whose
requirements are empty (nothing is downloaded): a venv whose python has no pip is made
again, a `npm ci` cut short is run again, and Ctrl-C during the install is one line."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = shutil.which("python3.11") or shutil.which("python3")
INTERRUPTED = "bootstrap: interrupted; run it again to finish installing"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The scripts, empty requirements, and a `npm` stand-in that records its calls."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("bootstrap", "run-local"):
        shutil.copy2(ROOT / "scripts" / name, repo / "scripts" / name)
    (repo / "requirements.txt").write_text("")
    (repo / "requirements-dev.txt").write_text("-r requirements.txt\n")
    (repo / "requirements-checkov.txt").write_text("")
    (repo / "package.json").write_text('{"name": "scratch", "private": true}\n')
    (repo / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    tools = tmp_path / "bin"
    tools.mkdir()
    npm = tools / "npm"
    npm.write_text('#!/bin/sh\necho "$@" >> "$NPM_CALLS"\nmkdir -p node_modules\n')
    npm.chmod(0o755)
    return repo


def environment(repo: Path, **extra: str) -> dict[str, str]:
    assert PYTHON, "no python3 on PATH"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    return {**keep, "PATH": f"{repo.parent / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "NPM_CALLS": str(repo.parent / "npm-calls"), "PYTHON": PYTHON, **extra}


def stamp(repo: Path, *names: str) -> str:
    return hashlib.sha256(b"".join((repo / n).read_bytes() for n in names)).hexdigest()


def bootstrap(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["scripts/bootstrap", "--app"], cwd=repo, env=environment(repo),
                          capture_output=True, text=True, timeout=120)


def test_a_venv_without_pip_is_made_again(scratch: Path) -> None:
    # What `python -m venv` leaves when Ctrl-C lands before it has installed pip.
    subprocess.run([str(PYTHON), "-m", "venv", "--without-pip", ".venv"], cwd=scratch,
                   check=True)
    broken = subprocess.run([".venv/bin/python", "-m", "pip", "--version"], cwd=scratch,
                            capture_output=True)
    assert broken.returncode != 0
    # node_modules stamped as complete: npm is not run.
    (scratch / "node_modules").mkdir()
    (scratch / "node_modules" / ".stamp").write_text(
        stamp(scratch, "package.json", "package-lock.json") + "\n")

    first = bootstrap(scratch)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        "bootstrap: installing Python packages into .venv",
        "bootstrap: .venv is incomplete (its python has no pip): making it again"]
    pip = subprocess.run([".venv/bin/python", "-m", "pip", "--version"], cwd=scratch,
                         capture_output=True, text=True)
    assert pip.returncode == 0 and str(scratch / ".venv") in pip.stdout
    assert (scratch / ".venv" / ".stamp").read_text() == \
        stamp(scratch, "requirements.txt", "requirements-dev.txt") + "\n"
    assert not (scratch.parent / "npm-calls").exists()

    again = bootstrap(scratch)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_an_npm_ci_cut_short_is_run_again(scratch: Path) -> None:
    subprocess.run([str(PYTHON), "-m", "venv", "--without-pip", ".venv"], cwd=scratch,
                   check=True)
    (scratch / ".venv" / ".stamp").write_text(
        stamp(scratch, "requirements.txt", "requirements-dev.txt") + "\n")
    (scratch / "node_modules" / "half").mkdir(parents=True)  # no stamp: never finished
    res = bootstrap(scratch)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["bootstrap: installing Node dev tools (npm ci)"]
    assert (scratch.parent / "npm-calls").read_text() == \
        "ci --no-audit --no-fund --loglevel=error\n"
    assert (scratch / "node_modules" / ".stamp").read_text() == \
        stamp(scratch, "package.json", "package-lock.json") + "\n"


@pytest.mark.parametrize("script", ["scripts/run-local", "scripts/bootstrap"])
def test_ctrl_c_while_installing_is_one_line(scratch: Path, script: str) -> None:
    # A `python -m venv` that takes its time, so Ctrl-C lands while it runs.
    started = scratch.parent / "venv-started"
    slow = scratch.parent / "bin" / "slow-python"
    slow.write_text(f'#!/bin/sh\ntouch "{started}"\nexec "{sys.executable}" -c '
                    '"import time; time.sleep(60)"\n')
    slow.chmod(0o755)
    proc = subprocess.Popen([script], cwd=scratch, env=environment(scratch, PYTHON=str(slow)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # Python is up and sleeping: its default handler would print a traceback
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert (out, err.splitlines()) == (
        "", ["bootstrap: installing Python packages into .venv", INTERRUPTED])
