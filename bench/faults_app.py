"""`python -m bench.faults_app --port N`: the real function_app under the dev host, for the
fault suite (bench/faults.py) to kill and start again. Settings come from the environment;
time is scaled down by injection (leases, attempt and request timeouts, retry delays,
host.json's queue timings), keeping every relation the production values keep:
a claim's lease outlasts an attempt, and a fetched message's lease outlasts both."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def serve(args: argparse.Namespace) -> None:
    import function_app
    from devhost.host import DevHost
    from shared import runtime
    from shared.runtime import Runtime
    from shared.settings import Settings
    from shared.storage import RetryPolicy
    from shared.twilio_rest import RoutedHttpClient

    assert args.lease > args.attempt and args.message_lease > args.lease, "scaled time"
    settings = Settings.from_env()
    rt = Runtime.build(
        settings, twilio_http_client=RoutedHttpClient(settings.api_base_url,
                                                      timeout=args.twilio_timeout),
        retry=RetryPolicy(tries=3, timeout_seconds=args.storage_timeout,
                          backoff_seconds=(0.2, 0.5)),
        lease_seconds=args.lease, attempt_seconds=args.attempt)
    rt.processor.delays = lambda kind, attempts: args.retry_delay
    runtime.use(rt)
    host_json = json.loads((ROOT / "host.json").read_text())
    host_json["extensions"]["queues"].update(visibilityTimeout=f"00:00:{args.visibility:02d}",
                                             maxPollingInterval="00:00:01")
    dev = DevHost(function_app.app, host_json, os.environ,
                  message_lease_seconds=args.message_lease)
    await dev.start("127.0.0.1", args.port)
    print(f"faults app listening on {args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await dev.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lease", type=float, default=6.0, help="a claim's lease, s")
    parser.add_argument("--attempt", type=float, default=5.0, help="one attempt's limit, s")
    parser.add_argument("--message-lease", type=float, default=8.0,
                        help="how long a fetched message stays invisible, s")
    parser.add_argument("--twilio-timeout", type=float, default=1.5)
    parser.add_argument("--storage-timeout", type=float, default=1.5)
    parser.add_argument("--retry-delay", type=int, default=1)
    parser.add_argument("--visibility", type=int, default=2,
                        help="host.json visibilityTimeout after a failure, s")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
