"""`python -m bench.validation`: what validating one job costs, typical and worst case.

Prints, in microseconds of CPU per job:
  - a typical job through jsonschema with a new validator per job, through jsonschema's
    validator built once and reused (the app before), through the validator fastjsonschema
    compiled once (the app now), and `jobs.parse` whole (decode, sizes, JSON, validation);
  - the worst inputs found for the schema (one queue message each, 64 KiB, built to make
    a backtracking pattern crawl, or holding thousands of bad items), through `jobs.parse`:
    refused, with the reason built by jsonschema;
  - the pattern the schema had before (`^https://[^\\s/?#]+[^\\s]*$`) on its worst input at a
    few sizes, to show the quadratic growth the new patterns do not have.
Figures are for people to read (this machine is shared and noisy), not asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import jobs  # noqa: E402

TYPICAL = {"id": "order-1042-shipped", "type": "sms", "to": "+15551234567",
           "body": "Order 1042 shipped.", "status_callback": "https://example.com/twilio/status"}
SMS = {"type": "sms", "to": "+15551234567", "body": "hi"}
CALL = {"type": "call", "to": "+15551234567", "say": "hello"}
HX = "HX" + "0123456789abcdef" * 2
# Each about one queue message (64 KiB) of what a backtracking pattern hates (a long run the
# repeated part matches, then a character that makes the whole fail at the very end), or of
# what makes a validator list error after error (thousands of fields or items).
WORST_INPUTS: dict[str, dict[str, Any]] = {
    "url": {**SMS, "status_callback": "https://" + "a" * 65000 + " "},
    "url path": {**SMS, "status_callback": "https://a/" + "b" * 65000 + " "},
    "id": {**SMS, "id": "a" * 65000 + "/"},
    "text": {**SMS, "body": "a" * 65000 + "\x00"},
    "language": {**CALL, "language": "en" + "-abcdefgh" * 7200 + "!"},
    "digits": {**CALL, "send_digits": "1" * 65000 + "x"},
    "variables": {"type": "sms", "to": "+15551234567", "content_sid": HX,
                  "content_variables": {"a" * 65000 + " ": "x"}},
    "unknown fields": {**SMS, **{f"f{i}": 0 for i in range(5400)}},
    # Many bad items under one field: each was checked and described (a 2 MB reason).
    "media items": {"type": "sms", "to": "+15551234567", "media_url": ["x"] * 13000},
    "variable count": {"type": "sms", "to": "+15551234567", "content_sid": HX,
                       "content_variables": {str(i): 0 for i in range(5000)}},
}
OLD_URL_PATTERN = r"^https://[^\s/?#]+[^\s]*$"


def cpu_per_call(fn: Callable[[], Any], repeat: int) -> float:
    """Microseconds of process CPU per call, the best of three rounds."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - start) / repeat)
    return best * 1e6


def refused(text: str) -> Callable[[], None]:
    def run() -> None:
        try:
            jobs.parse(text)
        except jobs.JobRejected:
            return
        raise AssertionError("a worst input was accepted")
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=2000, help="calls per typical measurement")
    p.add_argument("--worst-repeat", type=int, default=5, help="calls per worst input")
    p.add_argument("--old-sizes", default="2000,4000,8000",
                   help="URL lengths for the old pattern (it is quadratic: keep them small)")
    args = p.parse_args(argv)

    from jsonschema import Draft202012Validator

    schema = jobs.schema()
    reused = Draft202012Validator(schema)
    fast = jobs._fast_validator()
    text = json.dumps(TYPICAL)
    print("| typical job | us CPU per job |\n|---|---|")
    rows = [
        ("jsonschema, new validator per job", lambda: Draft202012Validator(schema).is_valid(
            TYPICAL), max(1, args.repeat // 10)),
        ("jsonschema, validator reused (before)", lambda: reused.is_valid(TYPICAL),
         args.repeat),
        ("fastjsonschema, compiled once (now)", lambda: fast(TYPICAL), args.repeat),
        ("jobs.parse whole (now)", lambda: jobs.parse(text), args.repeat),
    ]
    for name, fn, repeat in rows:
        print(f"| {name} | {cpu_per_call(fn, repeat):.1f} |")

    print("\n| worst input (64 KiB, refused) | bytes | us CPU per job |\n|---|---|---|")
    for name, doc in WORST_INPUTS.items():
        worst = json.dumps(doc)
        print(f"| {name} | {len(worst)} | {cpu_per_call(refused(worst), args.worst_repeat):.0f} |")

    print(f"\n| old pattern `{OLD_URL_PATTERN}`, worst input | chars | us CPU |\n|---|---|---|")
    old = re.compile(OLD_URL_PATTERN)
    for size in (int(s) for s in args.old_sizes.split(",")):
        url = "https://" + "a" * size + " "
        print(f"| `https://aaa...a ` | {len(url)} | "
              f"{cpu_per_call(lambda u=url: old.search(u), 1):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
