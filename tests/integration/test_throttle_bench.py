"""bench/throttle.py at CI scale: bursts against Twilio's concurrency limit, through real
instances (separate processes) on one Azurite queue. Every job is sent once; none is
dead-lettered or left retrying. The wall-time ratio is printed, not asserted (BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args", [
    ["--jobs", "200", "--ceiling", "16"],  # one instance set above the account's limit of 8
    ["--jobs", "300", "--instances", "3", "--limit", "20"],  # 3 x 8 requests > 20
], ids=["one-instance-above-the-limit", "three-instances-sharing-one-limit"])
def test_a_burst_is_sent_once_each_within_the_limit(args: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "bench.throttle", *args, "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, 1), res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    print(result)
    assert result["finished"], result  # drained before the bench's deadline
    assert (result["sent_once"], result["duplicates"]) == (result["jobs"], 0), result
    assert (result["dead_letters"], result["retrying"]) == (0, 0), result
    assert result["rows_sent"] == result["jobs"] and result["ok"], result
    assert result["throttled_429"] > 0, result  # the limit was met, and held
