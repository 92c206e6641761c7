"""`python -m bench.double --latency 0.05`: the Twilio double in its own process (so it does
not share the benchmark's CPU). Prints its URL; `GET /__stats` returns request and
connection counts."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.doubles import TwilioDouble  # noqa: E402


class StatsDouble(TwilioDouble):
    def handle(self, req, handler):  # type: ignore[no-untyped-def]
        if req.path == "/__stats":
            with self.lock:
                stats = {"creates": sum(1 for r in self.requests if r.method == "POST"),
                         "connections": self.connections}
            return 200, {"Content-Type": "application/json"}, json.dumps(stats).encode()
        return super().handle(req, handler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    double = StatsDouble(latency=args.latency)
    double.__enter__()
    print(double.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    double.__exit__()


if __name__ == "__main__":
    main()
