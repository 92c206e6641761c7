"""`python -m bench.startup`: cold start and webhook cost, side by side in one run.

1. Cold start: `import function_app` vs `import azure.functions` alone, each in a fresh
   process, interleaved, median of N.
2. Webhook cost: a signed POST to voice, sms and twiml/message handled in-process through
   the real trigger functions (request objects built outside the timed region), vs the
   bare twilio-library baseline for the same work: `RequestValidator.validate` + building
   the same TwiML.
3. Refusing forgeries: the CPU a request costs before its 403/400, at the body cap
   (`MAX_BODY_BYTES`), beside a valid typical one, through the same trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMPORT = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def cold_start(runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"azure.functions": [], "function_app": []}
    for i in range(runs):
        order = list(times) if i % 2 == 0 else list(times)[::-1]
        for module in order:  # interleaved, alternating: both see the same machine noise
            out = subprocess.run([sys.executable, "-c", IMPORT.format(module)], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
            times[module].append(float(out) * 1000)
    return {m: statistics.median(v) for m, v in times.items()}


def webhook_cost(n: int) -> list[tuple[str, float, float, float, float]]:
    import azure.functions as func
    from twilio.request_validator import RequestValidator
    from twilio.twiml.messaging_response import MessagingResponse
    from twilio.twiml.voice_response import VoiceResponse

    from shared import runtime
    from shared.runtime import Runtime
    from shared.settings import DEFAULT_GREETING, DEFAULT_SMS_REPLY
    from tests.helpers import (
        AUTH_TOKEN,
        MemoryLedger,
        MemoryQueues,
        form_body,
        settings,
        sign,
        trigger,
    )

    # Storage side effects (the sms route's inbound event) go to memory: this measures the
    # webhook's own work, as the baseline does.
    runtime.use(Runtime.build(settings(), ledger=MemoryLedger(), queues=MemoryQueues()))
    base = "http://localhost:7071/api/"
    call = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "1" * 32, "From": "+15551234567",
            "To": "+15005550006", "CallStatus": "ringing", "Direction": "inbound"}
    sms = {"MessageSid": "SM" + "1" * 32, "From": "+15551234567", "To": "+15005550006",
           "Body": "Hello there", "NumMedia": "0"}
    message_url = (base + "twiml/message?Message%5B0%5D=Hello"
                   "&Message%5B1%5D=https%3A%2F%2Fx.test%2Fa.mp3")

    def validated(url: str, body: bytes, sig: str) -> None:
        params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        assert RequestValidator(AUTH_TOKEN).validate(url, params, sig)

    def baseline_voice(url: str, body: bytes, sig: str) -> str:
        validated(url, body, sig)
        r = VoiceResponse()
        r.say(DEFAULT_GREETING)
        return str(r)

    def baseline_sms(url: str, body: bytes, sig: str) -> str:
        validated(url, body, sig)
        r = MessagingResponse()
        r.message(DEFAULT_SMS_REPLY)
        return str(r)

    def baseline_message(url: str, body: bytes, sig: str) -> str:
        validated(url, body, sig)
        query = parse_qs(url.split("?", 1)[1])
        r = VoiceResponse()
        r.say(query["Message[0]"][0])
        r.play(query["Message[1]"][0])
        return str(r)

    cases = [("voice", base + "voice", call, baseline_voice),
             ("sms", base + "sms", sms, baseline_sms),
             ("twiml/message", message_url, call, baseline_message)]
    rows = []
    for name, url, form, baseline in cases:
        body, sig = form_body(form), sign(url, form)
        route_params = {"name": "message"} if name == "twiml/message" else {}
        requests = [func.HttpRequest("POST", url, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig},
            body=body, route_params=route_params) for _ in range(n)]
        fn = trigger("twimlet" if name == "twiml/message" else name)

        async def ours(fn: Any = fn, requests: list[Any] = requests) -> list[float]:
            out = []
            for req in requests:
                t = time.perf_counter()
                res = await fn(req)
                out.append(time.perf_counter() - t)
                assert res.status_code == 200
            return out

        asyncio.run(ours())  # warm: first call builds the runtime's caches
        ours_t, base_t = [], []
        for _ in range(3):  # alternate rounds so noise hits both sides
            ours_t += asyncio.run(ours())
            for _ in range(n):
                t = time.perf_counter()
                baseline(url, body, sig)
                base_t.append(time.perf_counter() - t)
        rows.append((name, _us(ours_t, 50), _us(ours_t, 99), _us(base_t, 50), _us(base_t, 99)))
    return rows


def forgery_cost(n: int) -> list[tuple[str, int, int, float]]:
    """(case, body bytes, status, µs of process CPU per request): the best of 3 rounds."""
    import azure.functions as func

    from shared import runtime
    from shared.runtime import Runtime
    from shared.webhooks import MAX_BODY_BYTES
    from tests.helpers import MemoryLedger, MemoryQueues, form_body, settings, sign, trigger

    runtime.use(Runtime.build(settings(), ledger=MemoryLedger(), queues=MemoryQueues()))
    url = "http://localhost:7071/api/sms"
    sms = {"MessageSid": "SM" + "1" * 32, "From": "+15551234567", "To": "+15005550006",
           "Body": "Hello there", "NumMedia": "0"}
    forged = "A" * 27 + "="  # the shape of an HMAC-SHA1 signature, not ours

    def fill(prefix: bytes, unit: bytes) -> bytes:
        return prefix + unit * ((MAX_BODY_BYTES - len(prefix)) // len(unit))

    from shared.forms import MAX_FIELDS

    fields = b"&".join(b"F%d=%%41" % i for i in range(MAX_FIELDS - 1))
    cases = [
        ("valid, typical (sms)", form_body(sms), sign(url, sms)),
        ("unsigned, at the cap", fill(b"Body=", b"%41"), None),
        ("forged, at the cap: %41 escapes", fill(b"Body=", b"%41"), forged),
        (f"forged, at the cap: {MAX_FIELDS} fields", fill(fields + b"&Body=", b"%41"),
         forged),
        ("forged, at the cap: bad escapes %2%2", fill(b"Body=", b"%2"), forged),
        ("forged, at the cap: not UTF-8", fill(b"Body=", b"\xff"), forged),
    ]
    fn = trigger("sms")
    rows = []
    for name, body, sig in cases:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if sig:
            headers["X-Twilio-Signature"] = sig
        requests = [func.HttpRequest("POST", url, headers=headers, body=body)
                    for _ in range(n)]

        async def send(requests: list[Any] = requests) -> int:
            statuses = {(await fn(req)).status_code for req in requests}
            assert len(statuses) == 1, statuses
            return statuses.pop()

        status = asyncio.run(send())  # warm: builds the runtime's caches
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            asyncio.run(send())
            best = min(best, (time.process_time() - start) / n)
        rows.append((name, len(body), status, best * 1e6))
    return rows


def _us(values: list[float], pct: int) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * pct / 100))] * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per import")
    parser.add_argument("--requests", type=int, default=2000, help="requests per route")
    args = parser.parse_args()
    cold = cold_start(args.runs)
    ratio = cold["function_app"] / cold["azure.functions"]
    print(f"## Cold start (median of {args.runs} fresh processes each, interleaved)\n")
    print("| import | ms |\n|---|---|")
    for module, ms in cold.items():
        print(f"| `{module}` | {ms:.1f} |")
    print(f"| **ratio** | **{ratio:.3f}** (target <= 1.15) |\n")
    print(f"## Webhook cost ({args.requests} x 3 signed POSTs per route, in-process)\n")
    print("| route | ours p50 us | ours p99 us | baseline p50 us | baseline p99 us | "
          "ratio p50 |\n|---|---|---|---|---|---|")
    for name, o50, o99, b50, b99 in webhook_cost(args.requests):
        print(f"| {name} | {o50:.1f} | {o99:.1f} | {b50:.1f} | {b99:.1f} | "
              f"**{o50 / b50:.3f}** (target <= 1.0) |")
    forgeries = max(1, args.requests // 20)
    print(f"\n## Refusing forgeries ({forgeries} x 3 POSTs per case to sms, in-process, "
          "µs of process CPU per request, best round)\n")
    print("| case | body bytes | status | µs CPU | x valid typical |\n|---|---|---|---|---|")
    rows = forgery_cost(forgeries)
    typical = rows[0][3]
    for name, size, status, us in rows:
        print(f"| {name} | {size} | {status} | {us:.0f} | **{us / typical:.1f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
