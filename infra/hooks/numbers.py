"""Point the Twilio numbers in TWILIO_CONNECT_NUMBERS at the deployment, with `ops numbers
connect`. Optional, and never fails `azd up`: a number that could not be connected is named,
with the command to run by hand."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence

from infra.hooks.azd import AzdEnv
from infra.hooks.wait import Say
from shared.numbers import E164

VARIABLE = "TWILIO_CONNECT_NUMBERS"
Run = Callable[[Sequence[str]], int]


def run_ops(argv: Sequence[str]) -> int:
    """`python -m ops ...` with this interpreter; its output goes straight to the terminal."""
    return subprocess.run([sys.executable, "-m", "ops", *argv], check=False).returncode


def connect(env: AzdEnv, *, say: Say, run: Run = run_ops) -> list[str]:
    """Connects each number; returns those that failed (the hook still succeeds)."""
    raw = env.get(VARIABLE)
    if not raw:
        say(f"{VARIABLE} is not set: no Twilio number connected (docs/deploy.md, After azd up).")
        return []
    failed = []
    for number in (n.strip() for n in raw.split(",")):
        if not number:
            continue
        if not E164.match(number):
            say(f"  {VARIABLE}: {number!r} is not an E.164 number (+ and up to 15 digits, "
                "e.g. +15551234567): skipped.")
            failed.append(number)
            continue
        say(f"Connecting {number} to the deployment ...")
        if run(["numbers", "connect", number]) != 0:
            failed.append(number)
    if failed:
        say("Not connected: " + ", ".join(failed) + ". The deployment itself is fine: fix the "
            "number and run `.venv/bin/python -m ops numbers connect <E.164>` for each "
            "(it says what failed), or point it in the Twilio console (docs/deploy.md).")
    return failed
