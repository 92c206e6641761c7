"""`python -m bench.double --latency 0.05 [--max-in-flight 8]`: the Twilio double in its own
process (so it does not share the benchmark's CPU). Prints its URL; `GET /__stats` returns
request, connection and throttling counts. With `--max-in-flight`, requests beyond that many
at once get Twilio's 429 / 20429 (with `Retry-After`, unless `--retry-after ""`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.doubles import TwilioDouble  # noqa: E402


class StatsDouble(TwilioDouble):
    def handle(self, req, handler):  # type: ignore[no-untyped-def]
        if req.path == "/__stats":
            with self.lock:
                posts = [r for r in self.requests if r.method == "POST"]
                per_to = Counter(r["to"] for r in self.created)
                stats = {"creates": len(posts), "connections": self.connections,
                         "created": len(self.created), "throttled": self.throttled,
                         "peak_in_flight": self.peak_in_flight,
                         "duplicates": sum(n - 1 for n in per_to.values() if n > 1),
                         "recipients": len(per_to),
                         "once": sum(1 for n in per_to.values() if n == 1)}
            return 200, {"Content-Type": "application/json"}, json.dumps(stats).encode()
        return super().handle(req, handler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--max-in-flight", type=int, default=0)
    parser.add_argument("--retry-after", default="1")
    args = parser.parse_args()
    double = StatsDouble(latency=args.latency, max_in_flight=args.max_in_flight,
                         retry_after=args.retry_after or None)
    double.__enter__()
    print(double.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    double.__exit__()


if __name__ == "__main__":
    main()
