"""`python -m bench.throughput`: outbound throughput per instance, side by side in one run.

A Twilio double in its own process answers every create after `--latency` (50 ms). Jobs go
through the real queue trigger function with the host's concurrency (host.json `batchSize`
+ `newBatchThreshold`), the exactly-once ledger on Azurite, and the Key Vault path (a
counting secret client). Compared in the same run:
  - async (twilio's aiohttp client, what the app uses) vs a thread pool of the same size
    running twilio's sync client (send path only, no ledger);
  - the queue function in-process (host concurrency simulated) with the ledger on Azurite;
  - end to end: messages on Azurite's queue, drained by the dev host's queue loop.
TWILIO_MAX_CONCURRENCY is set to the host's concurrency, so the window never binds: these are
the app's own costs (`bench.throttle` measures the window against an account's limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost import services  # noqa: E402
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), to show where the cores went."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CountingSecrets:
    """A SecretClient stand-in that counts reads (the vault path without HTTPS)."""

    def __init__(self) -> None:
        self.reads = 0

    def get_secret(self, name: str) -> Any:
        self.reads += 1
        value = ACCOUNT_SID if name.endswith("sid") else AUTH_TOKEN
        return type("Secret", (), {"value": value})()


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/__stats", timeout=5) as res:
        return json.loads(res.read())  # type: ignore[no-any-return]


def job(i: int) -> str:
    return json.dumps({"id": f"bench-{i}-{time.monotonic_ns()}", "type": "sms",
                       "to": f"+1555{i:07d}", "body": f"reminder {i}"})


def runtime_for(env: dict[str, str], secrets: CountingSecrets) -> Any:
    from shared.runtime import Runtime
    from shared.settings import Settings

    settings = Settings.from_env({**env, "KEY_VAULT_URL": "https://bench.vault.azure.net"})
    return Runtime.build(settings, secret_client_factory=lambda: secrets)


# What each stage of the queue path is, by the functions that do it (cProfile cumulative
# CPU; coroutine time counts only while it runs, so waiting costs nothing).
STAGES = {
    "parse and validate": [("shared/jobs.py", "parse"), ("shared/jobs.py", "prepare")],
    "ledger claim": [("shared/ledger.py", "claim")],
    "send (twilio-python + aiohttp)": [("shared/twilio_rest.py", "send")],
    "ledger record": [("shared/ledger.py", "update")],
    "re-queue / dead letters": [("shared/storage.py", "put")],
}


def stage_split(stats: Any, total: float) -> dict[str, float]:
    """Each stage's share of the profiled CPU; what no stage holds is the event loop,
    aiohttp's response parsing and the trigger's glue."""
    shares: dict[str, float] = {}
    for stage, functions in STAGES.items():
        seconds = sum(row[3] for (path, _, name), row in stats.stats.items()
                      if any(path.endswith(f) and name == n for f, n in functions))
        shares[stage] = seconds / total
    shares["other (event loop, I/O callbacks, trigger)"] = max(0.0, 1 - sum(shares.values()))
    return shares


async def in_process(env: dict[str, str], n: int, concurrency: int, *,
                     profile: bool = False) -> dict[str, Any]:
    """The queue function called as the host would, `concurrency` at a time."""
    import cProfile
    import pstats

    from azure.functions.queue import QueueMessage

    from shared import runtime
    from tests.helpers import trigger

    secrets = CountingSecrets()
    rt = runtime_for(env, secrets)
    runtime.use(rt)
    fn = trigger("outbound")
    messages = [QueueMessage(id=f"m{i}", body=job(i).encode(), dequeue_count=1)
                for i in range(n)]
    await fn(QueueMessage(id="warm", body=job(9_999_999).encode(), dequeue_count=1))
    sem = asyncio.Semaphore(concurrency)

    async def one(m: Any) -> None:
        async with sem:
            await fn(m)

    profiler = cProfile.Profile(time.process_time) if profile else None
    cpu, t = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(one(m) for m in messages))
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    opened = rt.twilio.http_client.connections_opened
    await runtime.shutdown()
    result: dict[str, Any] = {"jobs_per_s": n / elapsed, "cpu_ms_per_job": cpu * 1000 / n,
                              "vault_reads": secrets.reads, "connections": opened}
    if profiler:
        result["stages"] = stage_split(pstats.Stats(profiler), cpu)
    return result


async def async_send_only(url: str, n: int, concurrency: int) -> float:
    from shared.credentials import CredentialCache, EnvironmentSource
    from shared.jobs import Job
    from shared.twilio_rest import TwilioApi

    api = TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)), url,
                    max_concurrency=concurrency)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await api.send(Job("sms", f"+1555{i:07d}", body="x"), FROM)

    await one(9_999_999)
    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t
    await api.close()
    return n / elapsed


def threads_send_only(url: str, n: int, concurrency: int) -> float:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    class Routed(TwilioHttpClient):  # type: ignore[misc]
        def request(self, method: str, uri: str, *args: Any, **kwargs: Any) -> Any:
            return super().request(method, url + uri.split(".twilio.com", 1)[1], *args,
                                   **kwargs)

    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=Routed(pool_connections=True),
                    environment={})
    client.http_client.session.mount("http://", __import__("requests").adapters.HTTPAdapter(
        pool_connections=concurrency, pool_maxsize=concurrency))

    def one(i: int) -> None:
        client.messages.create(to=f"+1555{i:07d}", from_=FROM, body="x")

    one(9_999_999)
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - t)


async def end_to_end(env: dict[str, str], n: int, url: str) -> float:
    """Messages on Azurite's queue, drained by the dev host running function_app."""
    from azure.storage.queue.aio import QueueClient

    import function_app
    from devhost.host import DevHost
    from shared import runtime

    runtime.use(runtime_for(env, CountingSecrets()))
    q = QueueClient.from_connection_string(env["AzureWebJobsStorage"],
                                           env["OUTBOUND_QUEUE_NAME"])
    async with q:
        await q.create_queue()
        await asyncio.gather(*(q.send_message(job(i)) for i in range(n)))
    before = stats(url)["creates"]
    host_json = json.loads((ROOT / "host.json").read_text())
    host_json["extensions"]["queues"]["maxPollingInterval"] = "00:00:00.2"
    dev = DevHost(function_app.app, host_json, env)
    t = time.perf_counter()
    await dev.start("127.0.0.1", services.free_port())
    while stats(url)["creates"] - before < n:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t
    await dev.stop()
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of the queue path (median shown)")
    args = parser.parse_args()
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    concurrency = queues["batchSize"] + queues["newBatchThreshold"]
    ideal = concurrency / args.latency

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    azurite = services.start_azurite(tmp)
    double = subprocess.Popen([sys.executable, "-m", "bench.double", "--latency",
                               str(args.latency)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = double.stdout.readline().strip()  # type: ignore[union-attr]
        env = {"AzureWebJobsStorage": azurite.env["AzureWebJobsStorage"],
               "OUTBOUND_QUEUE_NAME": "bench", "JOBS_TABLE_NAME": "benchjobs",
               "TWILIO_FROM_NUMBER": FROM, "TWILIO_API_BASE_URL": url,
               # Every invocation may have its request at Twilio: this measures the app,
               # not the window a deployment sizes to its account (bench.throttle does).
               "TWILIO_MAX_CONCURRENCY": str(concurrency)}
        os.environ.update(env)
        rows = []
        rate = asyncio.run(async_send_only(url, args.jobs, concurrency))
        rows.append(("send path, async (aiohttp, one session)", rate, ""))
        rate = threads_send_only(url, args.jobs, concurrency)
        rows.append((f"send path, {concurrency} threads (requests)", rate, ""))
        c0 = stats(url)["connections"]
        pids = {"app": os.getpid(), "Azurite": azurite.proc.pid,  # type: ignore[union-attr]
                "Twilio double": double.pid}
        runs, busy = [], {}
        for _ in range(args.rounds):
            before, t0 = {k: cpu_seconds(p) for k, p in pids.items()}, time.perf_counter()
            runs.append(asyncio.run(in_process(env, args.jobs, concurrency)))
            wall = time.perf_counter() - t0
            busy = {k: (cpu_seconds(p) - before[k]) / wall for k, p in pids.items()}
        cpu_job = statistics.median(r["cpu_ms_per_job"] for r in runs)
        rate = statistics.median(r["jobs_per_s"] for r in runs)
        last = runs[-1]
        rows.append(("queue function + ledger on Azurite + vault (in-process)", rate,
                     f"CPU {cpu_job:.2f} ms/job (median of {args.rounds}); vault reads "
                     f"{last['vault_reads']} (2 secrets); connections opened "
                     f"{last['connections']} (double saw {stats(url)['connections'] - c0}); "
                     "cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items())))
        profiled = asyncio.run(in_process(env, args.jobs, concurrency, profile=True))
        split = {k: v * cpu_job for k, v in profiled["stages"].items()}
        rate = asyncio.run(end_to_end(env, args.jobs, url))
        rows.append(("end to end: Azurite queue -> dev host -> double", rate, ""))
    finally:
        double.terminate()
        double.wait(timeout=5)
        azurite.stop()

    print(f"## Outbound throughput ({args.jobs} jobs, Twilio double latency "
          f"{args.latency * 1000:.0f} ms, concurrency {concurrency} = batchSize "
          f"{queues['batchSize']} + newBatchThreshold {queues['newBatchThreshold']})\n")
    print(f"Ideal: concurrency / latency = {ideal:.0f} jobs/s; target 0.9 x ideal = "
          f"{0.9 * ideal:.0f} jobs/s.\n")
    print("| path | jobs/s | x ideal | notes |\n|---|---|---|---|")
    for name, rate, notes in rows:
        print(f"| {name} | {rate:.0f} | {rate / ideal:.2f} | {notes} |")
    print(f"\nCPU per job by stage (cProfile shares of one profiled run, applied to the "
          f"unprofiled median of {cpu_job:.2f} ms/job):\n")
    print("| stage | ms/job | share |\n|---|---|---|")
    for stage, ms in split.items():
        print(f"| {stage} | {ms:.2f} | {ms / cpu_job:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
