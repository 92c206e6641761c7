"""The benchmark scripts run and print their tables (figures are read by people, not
asserted: these machines are too noisy for timed assertions)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_startup_bench_prints_its_three_tables() -> None:
    out = run("bench.startup", "--runs", "1", "--requests", "20")
    assert re.search(r"\| \*\*ratio\*\* \| \*\*\d+\.\d+\*\*", out)
    for route in ("voice", "sms", "twiml/message"):
        assert re.search(rf"^\| {re.escape(route)} \| [\d.]+ \|", out, re.M), route
    # Refusing forgeries at the body cap, beside a valid typical request: each case's status.
    for case, status in [("valid, typical (sms)", 200), ("unsigned, at the cap", 403),
                         ("forged, at the cap: %41 escapes", 403),
                         ("forged, at the cap: 256 fields", 403),
                         ("forged, at the cap: bad escapes %2%2", 400),
                         ("forged, at the cap: not UTF-8", 400)]:
        assert re.search(rf"^\| {re.escape(case)} \| \d+ \| {status} \| \d+ \| "
                         r"\*\*[\d.]+\*\* \|$", out, re.M), case


def test_throughput_bench_prints_every_path() -> None:
    out = run("bench.throughput", "--jobs", "40")
    for path in ("send path, async", "send path, 24 threads", "queue function + ledger",
                 "end to end"):
        assert re.search(rf"^\| {re.escape(path)}[^|]*\| \d+ \| [\d.]+ \|", out, re.M), path
    assert "vault reads 2 (2 secrets)" in out
