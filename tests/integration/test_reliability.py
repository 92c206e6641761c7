"""The reliability run (bench/reliability.py) at a small scale: faults injected, duplicates
delivered, bad jobs and forged webhooks; nothing sent twice, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reliability_run() -> None:
    res = subprocess.run([sys.executable, "-m", "bench.reliability", "--jobs", "40",
                          "--duplicates", "8", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    table = json.loads(res.stdout.strip().splitlines()[-1])
    assert table["ok"] is True
    assert table["duplicate sends (must be 0)"] == 0
    assert table["jobs lost (must be 0)"] == 0
    assert table["jobs sent"] == 40
    assert table["bad jobs tried / in -rejected as invalid_job"] == "8 / 8"
    assert table["refused by Twilio / in -rejected with code"] == "8 / 8"
    assert table["always failing / in -poison with last error"] == "2 / 2"
    assert table["signature attacks tried / refused"] == "8 / 8"
    assert table["faults injected (429, 5xx, timeout, reset, capacity)"] >= 20


def test_fault_suite() -> None:
    """bench/faults.py at CI scale: storage and Twilio paused, restarted, slow, losing
    requests and answers, the app killed mid-burst. No job lost, stuck or sent twice."""
    res = subprocess.run([sys.executable, "-m", "bench.faults", "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    results = {r["scenario"]: r for r in report["results"]}
    assert report["ok"] is True
    assert len(results) == 12
    for name, r in results.items():
        assert (r["lost"], r["stuck"], r["duplicates"]) == (0, 0, 0), (name, r["notes"])
        assert r["sent_once"] == r["jobs"], (name, r["notes"])
    # The faults met the jobs: answers lost at Twilio were found there, not sent again.
    for name in ("twilio-answers-lost", "twilio-slow", "twilio-500-after-create"):
        assert results[name]["checked"] >= 1 and results[name]["faults"] >= 1, name
    assert results["storage-answers-lost"]["faults"] >= 5
