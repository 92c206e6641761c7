"""`python -m bench.reliability`: the reliability table, measured.

Runs the real function_app under the dev host against Azurite and a scripted Twilio double:
good jobs (some delivered twice, some base64), bad jobs, jobs Twilio refuses, jobs that meet
429s, 5xx, timeouts and connection resets, and forged webhook requests. Prints what
happened to every job and exits non-zero if any job was sent twice, lost, or an attack got in.
Retry delays are shortened to 1 s so the run takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost import services  # noqa: E402
from tests.doubles import Reply, TwilioDouble  # noqa: E402
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM, form_body, sign  # noqa: E402

PERMANENT = [21211, 21610, 21614, 21608, 21612, 21606, 21635, 21617]
TRANSIENT = [Reply(429, {"code": 20429, "message": "Too Many Requests", "status": 429}),
             Reply(500), Reply(503), Reply(action="sleep", delay=2.0), Reply(action="reset")]
CAPACITY = [21611, 30001, 22005]
BAD = ['not json', '{"type": "sms", "to": "+15551234567", "bodyy": "typo"}',
       '{"type": "sms", "to": "555-1234", "body": "x"}', '{"type": "sms", "to": "+15551234567"}',
       '{"type": "call", "to": "+15551234567", "say": "a", "url": "https://a.example/t"}',
       '{"type": "fax", "to": "+15551234567"}', base64.b64encode(b"\x00junk").decode(), "[]"]


def number(i: int) -> str:
    return f"+1555{i:07d}"


def plan(n_good: int) -> dict[str, Any]:
    """Which job meets which fault. Jobs are keyed by their `to` number."""
    jobs: list[dict[str, Any]] = []
    faults: dict[str, list[Reply]] = {}
    kinds: dict[str, str] = {}
    for i in range(n_good):
        kind = "sms" if i % 3 else "call"
        job = {"id": f"rel-{i}", "type": kind, "to": number(i)}
        job.update({"body": f"reminder {i}"} if kind == "sms" else {"say": f"reminder {i}"})
        jobs.append(job)
        if i % 4 == 1:  # a quarter meet one transient fault, then succeed
            faults[number(i)] = [TRANSIENT[(i // 4) % len(TRANSIENT)]]
            kinds[number(i)] = "transient"
        elif i % 25 == 2:
            code = CAPACITY[(i // 25) % len(CAPACITY)]
            faults[number(i)] = [Reply(429 if code == 21611 else 400, {
                "code": code, "message": "slow down", "status": 400})]
            kinds[number(i)] = "capacity"
    refused = []
    for j, code in enumerate(PERMANENT):
        to = number(10_000 + j)
        refused.append({"id": f"rel-refused-{j}", "type": "sms", "to": to, "body": "x"})
        faults[to] = [Reply(400, {"code": code, "message": f"Twilio error {code}",
                                  "status": 400})]
    exhausted = []
    for j in range(2):
        to = number(20_000 + j)
        exhausted.append({"id": f"rel-exhausted-{j}", "type": "sms", "to": to, "body": "x"})
        faults[to] = [Reply(500) for _ in range(10)]
    return {"good": jobs, "refused": refused, "exhausted": exhausted, "faults": faults,
            "fault_kinds": kinds}


def attacks(base: str) -> list[tuple[str, urllib.request.Request]]:
    form = {"From": "+15551234567", "Body": "hi", "MessageSid": "SM" + "1" * 32}
    url = f"{base}/api/sms"
    good = sign(url, form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def post(path: str, body: dict[str, Any], sig: str | None) -> urllib.request.Request:
        h = dict(headers, **({"X-Twilio-Signature": sig} if sig is not None else {}))
        return urllib.request.Request(f"{base}{path}", data=form_body(body), headers=h)

    out = [("missing signature", post("/api/sms", form, None)),
           ("forged signature", post("/api/sms", form, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
           ("replayed with other params", post("/api/sms", {**form, "Body": "evil"}, good)),
           ("replayed to another route", post("/api/voice", form, good)),
           ("signed with another token", post("/api/sms", form, sign(url, form, "other"))),
           ("replayed with a param added", post("/api/sms", {**form, "X": "1"}, good)),
           ("status callback forged", post("/api/status", {"MessageSid": "SM1"}, "x"))]
    get_url = f"{base}/api/twiml/message?Message=Hi"
    out.append(("GET with changed query", urllib.request.Request(
        get_url.replace("Hi", "Bye"), headers={"X-Twilio-Signature": sign(get_url)})))
    return out


async def run(n_good: int, duplicates: int) -> dict[str, Any]:
    import function_app
    from devhost.host import DevHost
    from shared import runtime
    from shared.runtime import Runtime
    from shared.settings import Settings
    from shared.twilio_rest import RoutedHttpClient

    tmp = Path(tempfile.mkdtemp(prefix="reliability-"))
    azurite = services.start_azurite(tmp)
    double = TwilioDouble()
    double.__enter__()
    try:
        p = plan(n_good)
        double.by_to = {k: list(v) for k, v in p["faults"].items()}
        env = {"AzureWebJobsStorage": azurite.env["AzureWebJobsStorage"],
               "OUTBOUND_QUEUE_NAME": "reliability", "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
               "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM_NUMBER": FROM,
               "TWILIO_API_BASE_URL": double.url}
        os.environ.update(env)
        settings = Settings.from_env(env)
        rt = Runtime.build(settings, twilio_http_client=RoutedHttpClient(double.url, timeout=1.0))
        rt.processor.delays = lambda kind, attempt: 1
        runtime.use(rt)
        host_json = json.loads((ROOT / "host.json").read_text())
        dev = DevHost(function_app.app, host_json, env)
        port = services.free_port()
        await dev.start("127.0.0.1", port)

        from azure.storage.queue.aio import QueueClient
        q = QueueClient.from_connection_string(env["AzureWebJobsStorage"], "reliability")
        all_jobs = p["good"] + p["refused"] + p["exhausted"]
        texts = [json.dumps(j) for j in all_jobs]
        texts = [base64.b64encode(t.encode()).decode() if i % 10 == 0 else t
                 for i, t in enumerate(texts)]
        deliveries = texts + texts[:duplicates] + BAD
        started = time.monotonic()
        async with q:
            try:
                await q.create_queue()
            except Exception:  # noqa: BLE001 - exists
                pass
            for text in deliveries:
                await q.send_message(text)
            dup_again = texts[duplicates:2 * duplicates]  # redelivered after they were sent
            expected_good = {j["to"] for j in p["good"]}

            async def letters(name: str) -> list[dict[str, Any]]:
                c = QueueClient.from_connection_string(env["AzureWebJobsStorage"], name)
                async with c:
                    try:
                        return [json.loads(m.content) for m in
                                await c.peek_messages(max_messages=32)]
                    except Exception:  # noqa: BLE001 - queue not created yet
                        return []

            deadline = time.monotonic() + 180
            sent_again = False
            while time.monotonic() < deadline:
                sent_to = {r.form["To"][0] for r in double.sent()}
                rejected = await letters("reliability-rejected")
                poison = await letters("reliability-poison")
                props = await q.get_queue_properties()
                if expected_good <= sent_to and not sent_again:
                    for text in dup_again:
                        await q.send_message(text)
                    sent_again = True
                    continue
                if (sent_again and props.approximate_message_count == 0
                        and len(rejected) >= len(BAD) + len(PERMANENT)
                        and len(poison) >= len(p["exhausted"])):
                    break
                await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started

        refused = 0
        for _, req in attacks(f"http://127.0.0.1:{port}"):
            refused += await asyncio.to_thread(_status, req) == 403
        await dev.stop()
    finally:
        double.__exit__()
        azurite.stop()

    creates = double.sent()
    per_to: dict[str, int] = {}
    for r in creates:
        per_to[r.form["To"][0]] = per_to.get(r.form["To"][0], 0) + 1
    rejected_kinds = [r["kind"] for r in rejected]
    from shared.jobs import decode_text

    accounted = set(per_to) | {json.loads(decode_text(r["original"]))["to"] for r in rejected
                               if r["kind"] == "twilio_permanent"} | {
        json.loads(decode_text(r["original"]))["to"] for r in poison}
    every_job = {j["to"] for j in all_jobs}
    fault_replies = sum(len(v) for v in p["faults"].values()) - sum(
        len(v) for v in double.by_to.values())
    faulted_good = {to for to in p["fault_kinds"]}
    return {
        "jobs enqueued (valid)": len(all_jobs),
        "deliveries (with duplicates and redeliveries)": len(texts) + 2 * duplicates,
        "duplicates delivered": 2 * duplicates,
        "jobs sent": len(per_to),
        "duplicate sends (must be 0)": sum(c - 1 for c in per_to.values()),
        "bad jobs tried / in -rejected as invalid_job": (
            f"{len(BAD)} / {rejected_kinds.count('invalid_job')}"),
        "refused by Twilio / in -rejected with code": (
            f"{len(PERMANENT)} / {rejected_kinds.count('twilio_permanent')}"),
        "always failing / in -poison with last error": (
            f"{len(p['exhausted'])} / {sum(1 for x in poison if x.get('reason'))}"),
        "faults injected (429, 5xx, timeout, reset, capacity)": fault_replies,
        "jobs that met a fault and were then sent": len(faulted_good & set(per_to)),
        "jobs lost (must be 0)": len(every_job - accounted),
        "signature attacks tried / refused": f"{len(attacks('http://x'))} / {refused}",
        "seconds": round(elapsed, 1),
        "_ok": (sum(c - 1 for c in per_to.values()) == 0 and not (every_job - accounted)
                and refused == len(attacks("http://x"))
                and faulted_good <= set(per_to)),
    }


def _status(req: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return int(res.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--duplicates", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.duplicates))
    ok = result.pop("_ok")
    if args.json:
        print(json.dumps({**result, "ok": ok}))
    else:
        print("| measure | value |\n|---|---|")
        for key, value in result.items():
            print(f"| {key} | {value} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
