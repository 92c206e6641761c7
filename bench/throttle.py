"""`python -m bench.throttle`: a burst of jobs against Twilio's concurrency limit.

A Twilio double in its own process answers at most `--limit` requests at once (50 ms each)
and every request beyond them with HTTP 429 / error 20429 and `Retry-After: 1`, as an
account's REST concurrency limit does. `--instances` copies of the app (separate processes:
the dev host running function_app, 24 invocations at once each, failed messages visible again
after 2 s, 5 deliveries) drain one Azurite queue holding `--jobs` jobs. Printed: sent once,
duplicates, dead letters, jobs left retrying, 429s and the wall time as a ratio to the ideal
(jobs x latency / limit: the limit kept full and nothing wasted).

  python -m bench.throttle                                  # 1 instance, limit 8, 600 jobs
  python -m bench.throttle --instances 3 --limit 20 --jobs 1000
  python -m bench.throttle --ceiling 16                     # TWILIO_MAX_CONCURRENCY above the limit
  python -m bench.throttle --app-root /path/to/older/checkout --deadline 300   # before/after
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost import services  # noqa: E402
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM  # noqa: E402

# The queue listener as the harness had it: 16 + 8 invocations at once, a failed
# message visible again after 2 s, 5 deliveries, polling at least every 0.5 s.
QUEUES = {"batchSize": 16, "newBatchThreshold": 8, "maxDequeueCount": 5,
          "visibilityTimeout": "00:00:02", "maxPollingInterval": "00:00:00.5"}


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/__stats", timeout=5) as res:
        return json.loads(res.read())  # type: ignore[no-any-return]


def ledger_counts(conn: str, table: str) -> dict[str, int]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableClient

    counts: dict[str, int] = {}
    with TableClient.from_connection_string(conn, table) as tc:
        try:
            for row in tc.query_entities("PartitionKey ne 'meta'",
                                         select=["status", "throttled", "attempts"]):
                counts[row.get("status", "?")] = counts.get(row.get("status", "?"), 0) + 1
                # Attempts beyond the first: re-queued copies (throttled past the budget, or
                # another failure), each a delay of seconds.
                counts["requeued"] = counts.get("requeued", 0) + int(row.get("attempts") or 1) - 1
        except ResourceNotFoundError:
            pass
    return counts


def queue_length(conn: str, name: str) -> int:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(conn, name) as q:
        try:
            return int(q.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0


def enqueue(conn: str, name: str, jobs: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from azure.storage.queue import QueueClient

    run = time.monotonic_ns()
    with QueueClient.from_connection_string(conn, name) as q:
        try:
            q.create_queue()
        except Exception:  # noqa: BLE001 - exists
            pass
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: q.send_message(json.dumps({
                "id": f"burst-{run}-{i}", "type": "sms", "to": f"+1555{i:07d}",
                "body": f"burst {i}"})), range(jobs)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-throttle-"))
    azurite = services.start_azurite(tmp)
    procs: list[subprocess.Popen[str]] = []
    double = subprocess.Popen([sys.executable, "-m", "bench.double", "--latency",
                               str(args.latency), "--max-in-flight", str(args.limit)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = (double.stdout.readline() if double.stdout else "").strip()
        conn = azurite.env["AzureWebJobsStorage"]
        env = {**os.environ, "AzureWebJobsStorage": conn, "OUTBOUND_QUEUE_NAME": "burst",
               "JOBS_TABLE_NAME": "burstjobs", "TWILIO_API_BASE_URL": url,
               "TWILIO_FROM_NUMBER": FROM, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
               "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_MAX_CONCURRENCY": str(args.ceiling),
               "PYTHONPATH": ""}
        env.pop("KEY_VAULT_URL", None)
        for _ in range(args.instances):
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "instance.py"), "--port",
                 str(services.free_port()), "--host-json", json.dumps(QUEUES),
                 "--app-root", str(args.app_root)],
                cwd=args.app_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True))
        for p in procs:
            if (p.stdout.readline() if p.stdout else "").strip() != "ready":
                raise RuntimeError("an instance did not start")
        start = time.perf_counter()
        enqueue(conn, "burst", args.jobs)
        deadline = start + args.deadline
        while time.perf_counter() < deadline:
            if stats(url)["created"] >= args.jobs and queue_length(conn, "burst") == 0:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        time.sleep(0.5)  # the last rows written
        s = stats(url)
        rows = ledger_counts(conn, "burstjobs")
        letters = {q: queue_length(conn, f"burst-{q}") for q in ("rejected", "poison")}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        double.terminate()
        double.wait(timeout=5)
        azurite.stop()
    ideal = args.jobs * args.latency / args.limit
    return {
        "jobs": args.jobs, "instances": args.instances, "limit": args.limit,
        "ceiling": args.ceiling, "sent_once": s["once"], "duplicates": s["duplicates"],
        "dead_letters": sum(letters.values()), "requeued": rows.get("requeued", 0),
        "retrying": rows.get("retrying", 0) +
        rows.get("sending", 0), "rows_sent": rows.get("sent", 0), "throttled_429": s["throttled"],
        "peak_in_flight": s["peak_in_flight"], "wall_s": round(wall, 2),
        "ideal_s": round(ideal, 2), "x_ideal": round(wall / ideal, 2),
        "finished": wall < args.deadline,
        "ok": s["duplicates"] == 0 and s["recipients"] == args.jobs and
        not sum(letters.values()) and rows.get("sent", 0) == args.jobs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throttle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--limit", type=int, default=8, help="Twilio's requests in flight")
    parser.add_argument("--ceiling", type=int, default=8, help="TWILIO_MAX_CONCURRENCY")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--deadline", type=float, default=120.0, help="give up after (s)")
    parser.add_argument("--app-root", type=Path, default=ROOT)
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print("| " + " | ".join(result) + " |")
        print("|" + "---|" * len(result))
        print("| " + " | ".join(str(v) for v in result.values()) + " |")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
