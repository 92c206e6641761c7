"""The validation benchmark runs and prints its three tables (figures are read by people,
not asserted: these machines are too noisy for timed assertions)."""

from __future__ import annotations

import re

from bench.validation import WORST_INPUTS
from tests.integration.test_bench_scripts import run


def test_validation_bench_prints_typical_worst_and_old_pattern_costs() -> None:
    out = run("bench.validation", "--repeat", "20", "--worst-repeat", "1",
              "--old-sizes", "500,1000")
    for row in ("jsonschema, validator reused (before)", "fastjsonschema, compiled once (now)",
                "jobs.parse whole (now)"):
        assert re.search(rf"^\| {re.escape(row)} \| [\d.]+ \|$", out, re.M), row
    for name in WORST_INPUTS:
        assert re.search(rf"^\| {re.escape(name)} \| \d+ \| \d+ \|$", out, re.M), name
    assert len(re.findall(r"^\| `https://aaa\.\.\.a ` \| \d+ \| \d+ \|$", out, re.M)) == 2
