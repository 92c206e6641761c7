"""`python -m bench.faults`: the fault suite. Every job ends sent once, or in a dead-letter
queue with its reason; none is lost, none is left stuck.

Real processes on loopback: Azurite (persisted to disk, so it can be stopped and started
again with its data), a Twilio double of our own (`python -m tests.doubles twilio`,
journaled to disk), and the real function_app under the dev host (`bench.faults_app`, with
time scaled down). Between the app and each service sits a fault proxy
(`tests.faultproxy`) that loses requests, loses answers after the service acted, or delays
them. Each scenario sends a burst of jobs while one kind of fault happens, waits for the
system to settle, and counts per job: sent once, duplicates, lost, stuck, dead-lettered.
Exits non-zero on any lost or stuck job.

    .venv/bin/python -m bench.faults            # the full suite (docs/reliability.md table)
    .venv/bin/python -m bench.faults --quick    # fewer jobs per scenario (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost import services  # noqa: E402
from tests.faultproxy import Fault, FaultProxy  # noqa: E402
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM  # noqa: E402

QUEUE, TABLE = "faults", "faultjobs"
# Each create takes this long at the double, so a burst is still under way when a fault
# is injected "mid-burst" (after its first few sends).
TWILIO_LATENCY = 0.2
FINAL = {"sent", "rejected", "failed", "unknown"}


@dataclass
class Scenario:
    name: str
    fault: str  # what happens, for the table
    run: Callable[[Stack], Awaitable[None]]  # runs while the burst is processed
    quiet_before: float = 0.0


@dataclass
class Result:
    scenario: str
    fault: str
    jobs: int
    sent_once: int = 0
    duplicates: int = 0
    lost: int = 0
    stuck: int = 0
    dead_lettered: int = 0
    retried: int = 0  # jobs claimed more than once
    checked: int = 0  # jobs whose earlier attempt was looked up at Twilio
    faults: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.stuck == 0 and self.duplicates == 0


class Stack:
    """Azurite, the Twilio double and the app, each a process; proxies in between."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {name: services.free_port() for name in
                      ("blob", "queue", "table", "twilio", "app")}
        self.azurite: services.Service | None = None
        self.twilio: subprocess.Popen[bytes] | None = None
        self.app: subprocess.Popen[bytes] | None = None
        self.journal = tmp / "twilio.jsonl"
        self.proxies: dict[str, FaultProxy] = {}
        self.burst = ""  # the `to` prefix of the scenario under way

    # -- processes ----------------------------------------------------------------------

    def start(self) -> None:
        self.start_azurite()
        self.twilio = subprocess.Popen(
            [sys.executable, "-m", "tests.doubles", "twilio", "--port",
             str(self.ports["twilio"]), "--journal", str(self.journal),
             "--latency", str(TWILIO_LATENCY)], cwd=ROOT,
            stdout=(self.tmp / "twilio.log").open("ab"), stderr=subprocess.STDOUT)
        _wait_port(self.ports["twilio"], self.twilio, "twilio double")
        for name, port in (("queue", self.ports["queue"]), ("table", self.ports["table"]),
                           ("twilio", self.ports["twilio"])):
            self.proxies[name] = FaultProxy(f"http://127.0.0.1:{port}").__enter__()
        self.start_app()

    def start_azurite(self) -> None:
        self.azurite = services.start_azurite(
            self.tmp, blob=self.ports["blob"], queue=self.ports["queue"],
            table=self.ports["table"], location=self.tmp / "azurite-data")

    def start_app(self) -> None:
        env = {**os.environ, "AzureWebJobsStorage": services.azurite_connection_string(
                   self.ports["blob"], self.proxies["queue"].port, self.proxies["table"].port),
               "TWILIO_API_BASE_URL": self.proxies["twilio"].url,
               "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
               "TWILIO_FROM_NUMBER": FROM, "OUTBOUND_QUEUE_NAME": QUEUE,
               "JOBS_TABLE_NAME": TABLE}
        for name in ("KEY_VAULT_URL", "WEBHOOK_BASE_URL"):
            env.pop(name, None)
        self.app = subprocess.Popen(
            [sys.executable, "-m", "bench.faults_app", "--port", str(self.ports["app"])],
            cwd=ROOT, env=env, stdout=(self.tmp / "app.log").open("ab"),
            stderr=subprocess.STDOUT)
        _wait_port(self.ports["app"], self.app, "app")

    def stop(self) -> None:
        for proc in (self.app, self.twilio):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for proxy in self.proxies.values():
            proxy.__exit__()
        if self.azurite is not None and self.azurite.proc is not None:
            self.azurite.proc.send_signal(signal.SIGCONT)
            self.azurite.stop()

    # -- faults -------------------------------------------------------------------------

    async def pause(self, proc: subprocess.Popen[bytes] | None, seconds: float) -> None:
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(seconds)
        proc.send_signal(signal.SIGCONT)

    async def restart_azurite(self, down: float) -> None:
        assert self.azurite is not None
        self.azurite.stop()  # SIGTERM: Azurite writes its data out, as a restart would
        await asyncio.sleep(down)
        await asyncio.to_thread(self.start_azurite)

    async def kill_app(self, down: float) -> None:
        assert self.app is not None
        self.app.kill()  # SIGKILL: no cleanup, messages mid-flight
        self.app.wait()
        await asyncio.sleep(down)
        await asyncio.to_thread(self.start_app)

    # -- observation --------------------------------------------------------------------

    @property
    def direct(self) -> str:
        """A connection string straight to Azurite, for the suite's own reads and writes."""
        return services.azurite_connection_string(self.ports["blob"], self.ports["queue"],
                                                  self.ports["table"])

    def creates_by_to(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.journal.exists():
            for line in self.journal.read_text().splitlines():
                if line.strip():
                    to = json.loads(line)["to"]
                    counts[to] = counts.get(to, 0) + 1
        return counts

    async def mid_burst(self, sent: int = 3) -> None:
        """Wait until the burst under way has `sent` messages or calls at Twilio."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = self.creates_by_to()
            if sum(n for to, n in counts.items() if to.startswith(self.burst)) >= sent:
                return
            await asyncio.sleep(0.02)

    def faults_fired(self) -> int:
        return sum(p.fired() for p in self.proxies.values())


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if services.port_open(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not open port {port}")


def _lose_answers(stack: Stack) -> Callable[[Stack], Awaitable[None]]:
    async def run(_: Stack) -> None:
        stack.proxies["table"].add(
            Fault("lose_answer", method="POST", path=rf"/{TABLE}$", times=4),
            Fault("lose_answer", method="PATCH", path=TABLE, times=4))
        stack.proxies["queue"].add(
            Fault("lose_answer", method="DELETE", path=f"/{QUEUE}/messages", times=3))
    return run


def scenarios(stack: Stack) -> list[Scenario]:
    twilio, table, queue = (stack.proxies[n] for n in ("twilio", "table", "queue"))

    async def nothing(_: Stack) -> None:
        return None

    async def lose_requests(_: Stack) -> None:
        table.add(Fault("lose_request", method="POST", path=rf"/{TABLE}$", times=3),
                  Fault("lose_request", method="PATCH", path=TABLE, times=3),
                  Fault("lose_request", method="GET", path=TABLE, times=2))
        queue.add(Fault("lose_request", method="GET", path=f"/{QUEUE}/messages", times=2),
                  Fault("lose_request", method="DELETE", path=f"/{QUEUE}/messages", times=2))

    async def twilio_answers_lost(_: Stack) -> None:
        twilio.add(Fault("lose_answer", method="POST", path=r"\.json$", times=5))

    async def twilio_slow(_: Stack) -> None:
        twilio.add(Fault("delay", method="POST", path=r"\.json$", times=5, seconds=3.0))

    async def twilio_refuses_then_recovers(_: Stack) -> None:
        twilio.add(Fault("fail", method="POST", path=r"\.json$", times=6, status=503))

    async def twilio_500_after_create(_: Stack) -> None:
        twilio.add(Fault("fail_after", method="POST", path=r"\.json$", times=5, status=500))

    async def storage_paused(s: Stack) -> None:
        await s.mid_burst()
        await s.pause(s.azurite.proc if s.azurite else None, 8.0)

    async def storage_restarted(s: Stack) -> None:
        await s.mid_burst()
        await s.restart_azurite(2.0)

    async def twilio_paused(s: Stack) -> None:
        await s.mid_burst()
        await s.pause(s.twilio, 5.0)

    async def app_killed(s: Stack) -> None:
        await s.mid_burst()
        await s.kill_app(1.0)

    return [
        Scenario("baseline", "none", nothing),
        Scenario("storage-answers-lost", "4 claims, 4 records, 3 deletes: the answer lost "
                 "after the write", _lose_answers(stack)),
        Scenario("storage-requests-lost", "claims, records, reads, fetches, deletes cut on "
                 "the wire", lose_requests),
        Scenario("storage-paused", "Azurite stopped (SIGSTOP) for 8 s mid-burst",
                 storage_paused),
        Scenario("storage-restarted", "Azurite shut down mid-burst, back 2 s later with its "
                 "data", storage_restarted),
        Scenario("idle-then-burst", "6 s of quiet first (idle keep-alives closed at 5 s)",
                 nothing, quiet_before=6.0),
        Scenario("twilio-answers-lost", "5 creates accepted by Twilio, the answer lost",
                 twilio_answers_lost),
        Scenario("twilio-slow", "5 creates delayed 3 s (the client gives up at 1.5 s; "
                 "Twilio still creates them)", twilio_slow),
        Scenario("twilio-503", "6 creates refused with 503, then accepted",
                 twilio_refuses_then_recovers),
        Scenario("twilio-500-after-create", "5 creates made by Twilio, then answered 500",
                 twilio_500_after_create),
        Scenario("twilio-paused", "the Twilio double stopped (SIGSTOP) for 5 s",
                 twilio_paused),
        Scenario("app-killed", "the app process killed (SIGKILL) mid-burst, restarted",
                 app_killed),
    ]


async def run_scenario(stack: Stack, index: int, scenario: Scenario, n_jobs: int,
                       settle_seconds: float) -> Result:
    from azure.data.tables.aio import TableClient
    from azure.storage.queue.aio import QueueClient

    jobs = [{"id": f"{scenario.name}-{i}", "type": "sms" if i % 4 else "call",
             "to": f"+1555{index:03d}{i:04d}"} for i in range(n_jobs)]
    for job in jobs:
        job.update({"body": f"fault test {job['id']}"} if job["type"] == "sms"
                   else {"say": f"fault test {job['id']}"})
    if scenario.quiet_before:
        await asyncio.sleep(scenario.quiet_before)
    stack.burst = f"+1555{index:03d}"
    fired_before = stack.faults_fired()
    started = time.monotonic()
    async with QueueClient.from_connection_string(stack.direct, QUEUE) as q:
        await asyncio.gather(*(q.send_message(json.dumps(job)) for job in jobs))
    await scenario.run(stack)
    result = Result(scenario.name, scenario.fault, n_jobs)
    rows: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + settle_seconds
    while True:
        await asyncio.sleep(0.5)
        try:
            async with TableClient.from_connection_string(stack.direct, TABLE) as table:
                rows = {e["RowKey"]: dict(e) async for e in table.query_entities(
                    f"RowKey ge '{scenario.name}-' and RowKey lt '{scenario.name}.'")}
            async with QueueClient.from_connection_string(stack.direct, QUEUE) as q:
                pending = (await q.get_queue_properties()).approximate_message_count
        except Exception:  # noqa: BLE001 - Azurite is down in this scenario: wait
            if time.monotonic() > deadline:
                break
            continue
        settled = pending == 0 and all(rows.get(j["id"], {}).get("status") in FINAL
                                       for j in jobs)
        if settled or time.monotonic() > deadline:
            break
    result.seconds = round(time.monotonic() - started, 1)
    result.faults = stack.faults_fired() - fired_before
    letters = await _dead_letters(stack)
    creates = stack.creates_by_to()
    for job in jobs:
        n = creates.get(job["to"], 0)
        row = rows.get(job["id"], {})
        status = row.get("status")
        result.retried += int(row.get("attempts") or 0) > 1
        result.checked += bool(row.get("reconciled"))
        dead = job["id"] in letters
        if n > 1:
            result.duplicates += n - 1
            result.notes.append(f"{job['id']}: sent {n} times (row: {status})")
        if n >= 1 and status == "sent":
            result.sent_once += n == 1
        elif dead and n == 0:
            result.dead_lettered += 1
        elif status in ("sending", "retrying") or (n >= 1 and status != "sent"):
            result.stuck += 1
            result.notes.append(f"{job['id']}: row {status}, {n} sent, "
                                 f"dead letter: {letters.get(job['id'])}")
        elif n == 0:
            result.lost += 1
            result.notes.append(f"{job['id']}: lost (row: {status})")
    return result


async def _dead_letters(stack: Stack) -> dict[str, str]:
    """job key -> kind, from both dead-letter queues (the host's poison move: the original)."""
    from azure.storage.queue.aio import QueueClient

    found: dict[str, str] = {}
    for name in (f"{QUEUE}-rejected", f"{QUEUE}-poison"):
        async with QueueClient.from_connection_string(stack.direct, name) as q:
            try:
                messages = await q.peek_messages(max_messages=32)
            except Exception:  # noqa: BLE001 - not created: nothing dead-lettered
                continue
            for m in messages:
                doc = json.loads(m.content)
                key = doc.get("job_key") or doc.get("id")
                found[str(key)] = doc.get("kind", "host_poison")
    return found


async def suite(n_jobs: int, only: list[str] | None, settle_seconds: float) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    print(f"logs: {tmp}", file=sys.stderr)
    stack = Stack(tmp)
    await asyncio.to_thread(stack.start)
    results = []
    try:
        for index, scenario in enumerate(scenarios(stack)):
            if only and scenario.name not in only:
                continue
            results.append(await run_scenario(stack, index, scenario, n_jobs, settle_seconds))
            for proxy in stack.proxies.values():
                proxy.clear()
    finally:
        await asyncio.to_thread(stack.stop)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40, help="jobs per scenario")
    parser.add_argument("--quick", action="store_true", help="12 jobs per scenario")
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="seconds a scenario may take to settle")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    results = asyncio.run(suite(12 if args.quick else args.jobs, args.only, args.settle))
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "results": [r.__dict__ for r in results]}))
    else:
        print("| scenario | fault | jobs | sent once | duplicates | lost | stuck | "
              "dead-lettered | retried | checked at Twilio | proxy faults | s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r.scenario} | {r.fault} | {r.jobs} | {r.sent_once} | {r.duplicates} | "
                  f"{r.lost} | {r.stuck} | {r.dead_lettered} | {r.retried} | {r.checked} | "
                  f"{r.faults} | {r.seconds} |")
        for r in results:
            for note in r.notes:
                print(f"  {r.scenario}: {note}")
        print(f"\n{'ok' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
