"""Throttling by Twilio (429 / 20429): the instance's window, the waits, and the worker's
rule that throttling is not failure."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException

from shared.limiter import AdaptiveLimiter
from shared.outbound import OutboundProcessor, QueueItem, throttle_delay
from shared.twilio_rest import TwilioThrottled, retry_after_seconds, throttle_wait
from tests.helpers import FakeSender, MemoryLedger, MemoryQueues, settings

SMS = {"id": "t-1", "type": "sms", "to": "+15551234567", "body": "hi"}
POISON, OUTBOUND = "twilio-outbound-poison", "twilio-outbound"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the window ------------------------------------------------------------------------------

def run_slots(limiter: AdaptiveLimiter, outcomes: list[str]) -> None:
    async def go() -> None:
        for outcome in outcomes:
            async with limiter.slot() as slot:
                getattr(slot, outcome)() if outcome != "other" else None
    asyncio.run(go())


def test_the_window_shrinks_on_429_once_per_cooldown_and_grows_back_by_the_second() -> None:
    clock = Clock(0.0)
    limiter = AdaptiveLimiter(8, clock=clock)
    run_slots(limiter, ["throttled", "throttled", "throttled"])  # one burst: one cut
    assert (limiter.window, limiter.throttled) == (6.0, 3)
    clock.now = 1.0
    run_slots(limiter, ["throttled"])
    assert limiter.window == 4.5
    run_slots(limiter, ["ok"] * 50)  # no time has passed: no growth however many
    assert limiter.window == 4.5
    clock.now = 3.0
    run_slots(limiter, ["ok"])  # one request a second
    assert limiter.window == 6.5
    clock.now = 60.0
    run_slots(limiter, ["ok"])
    assert limiter.window == 8.0  # never above the ceiling
    run_slots(limiter, ["other"] * 5)  # errors say nothing about the account's limit
    assert (limiter.window, limiter.requests) == (8.0, 56)
    for _ in range(12):
        clock.now += 1
        run_slots(limiter, ["throttled"])
    assert limiter.window == 1.0  # never below one request


def test_the_window_bounds_requests_in_flight() -> None:
    limiter = AdaptiveLimiter(3)
    peak = 0

    async def request() -> None:
        nonlocal peak
        async with limiter.slot() as slot:
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.01)
            slot.ok()

    async def go() -> None:
        await asyncio.gather(*(request() for _ in range(30)))

    asyncio.run(go())
    assert peak == 3 and limiter.in_flight == 0 and limiter.requests == 30


def test_throttling_is_reported_once_a_minute_then_once_when_recovered(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "shared.limiter")
    clock = Clock(0.0)
    limiter = AdaptiveLimiter(4, clock=clock)
    run_slots(limiter, ["throttled", "ok", "ok"])
    assert caplog.messages == []  # not before a minute has passed
    clock.now = 60.5  # a release after a minute reports the period that ends with it
    run_slots(limiter, ["throttled"])
    clock.now = 121.0
    run_slots(limiter, ["ok"] * 20)  # the first grows it back to the ceiling: reported
    clock.now = 182.0
    run_slots(limiter, ["ok"] * 3)  # quiet: nothing
    assert [m.split(" period_s")[0] for m in caplog.messages] == [
        "twilio_throttle window=2.2 ceiling=4 in_flight=0 requests=4 throttled=2 waited_s=0.0",
        "twilio_throttle window=4.0 ceiling=4 in_flight=0 requests=1 throttled=0 waited_s=0.0",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


# -- the waits -----------------------------------------------------------------------------------

def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    for bad in (None, "", "soon", "-1", "1.5e9", "Wed, 21 Oct 2015 07:28:00"):
        assert retry_after_seconds(bad) is None


def test_waits_are_jittered_grow_and_honour_retry_after() -> None:
    rng = random.Random(3)
    waits = [throttle_wait(n, None, rng) for n in range(8)]
    assert all(0 <= w <= min(4.0, 0.25 * 2 ** n) for n, w in enumerate(waits))
    assert len(set(waits)) == 8
    assert all(2.0 <= throttle_wait(n, 2.0, rng) <= 6.0 for n in range(8))
    delays = [throttle_delay(streak, None, random.Random(streak)) for streak in range(1, 10)]
    assert delays[0] in range(3, 9) and max(delays) <= 450
    assert throttle_delay(1, 40.0, rng) >= 40


# -- the worker: throttling is not failure -------------------------------------------------------

def throttled(retry_after: float | None = 1.0) -> TwilioThrottled:
    return TwilioThrottled(429, "https://api.twilio.com/x", "Too Many Requests", 20429, "POST",
                           retry_after)


def processor(*script: Any, clock: Clock, **overrides: str
              ) -> tuple[OutboundProcessor, FakeSender, MemoryLedger, MemoryQueues]:
    sender, ledger, queues = FakeSender(*script), MemoryLedger(clock), MemoryQueues()
    return (OutboundProcessor(settings(**overrides), sender, ledger, queues, clock=clock,
                              spread=round, rng=random.Random(5)), sender, ledger, queues)


def deliver_all(p: OutboundProcessor, queues: MemoryQueues, clock: Clock) -> list[str]:
    results = [asyncio.run(p.process(QueueItem("m-0", json.dumps(SMS)))).result]
    n = 0
    while results[-1] == "retry_scheduled":
        text, delay = queues.messages[OUTBOUND][-1]
        clock.now += delay
        n += 1
        results.append(asyncio.run(p.process(QueueItem(f"m-{n}", text))).result)
    return results


def test_a_job_throttled_many_times_is_sent_and_keeps_its_attempts() -> None:
    clock = Clock()
    p, sender, ledger, queues = processor(*[throttled()] * 12, clock=clock)
    results = deliver_all(p, queues, clock)
    assert results == ["retry_scheduled"] * 12 + ["sent"]  # 12 > the 5 attempts
    row = ledger.rows["t-1"]
    assert (row["status"], row["throttled"], row["attempts"]) == ("sent", 12, 13)
    assert POISON not in queues.messages


def test_throttled_then_failing_counts_only_real_attempts() -> None:
    clock = Clock()
    error = TwilioRestException(401, "https://api.twilio.com/x", "Authenticate", 20003)
    p, sender, ledger, queues = processor(*[throttled()] * 6, *[error] * 5, clock=clock)
    results = deliver_all(p, queues, clock)
    assert results == ["retry_scheduled"] * 10 + ["poisoned"]
    letter = json.loads(queues.texts(POISON)[0])
    assert (letter["kind"], letter["attempts"]) == ("retries_exhausted", 5)


def test_a_job_throttled_past_the_deadline_is_dead_lettered_as_throttled() -> None:
    clock = Clock()
    p, sender, ledger, queues = processor(*[throttled(None)] * 100, clock=clock,
                                          THROTTLE_DEADLINE_SECONDS="600")
    results = deliver_all(p, queues, clock)
    assert results[-1] == "poisoned" and set(results[:-1]) == {"retry_scheduled"}
    letter = json.loads(queues.texts(POISON)[0])
    assert letter["kind"] == "throttled" and letter["twilio_code"] == 20429
    assert letter["reason"].startswith("Twilio kept refusing for load for 1")
    row = ledger.rows["t-1"]
    assert row["status"] == "failed" and row["throttled"] == len(results)
    delays = [d for _, d in queues.messages[OUTBOUND]]
    assert delays[:4] == sorted(delays[:4]) and max(delays) <= 450  # growing, capped


def test_a_burst_of_refusals_counts_once_per_two_round_trips() -> None:
    clock = Clock(0.0)
    limiter = AdaptiveLimiter(16, clock=clock)

    async def request(seconds: float, outcome: str) -> None:
        slot = await limiter.acquire()
        clock.now += seconds
        getattr(slot, outcome)()
        await limiter.release(slot)

    async def go() -> None:
        for _ in range(5):
            await request(0.2, "ok")  # requests take 0.2 s: the burst lasts 0.4 s
        assert limiter.cooldown == pytest.approx(0.4)
        await request(0.0, "throttled")
        clock.now += 0.3
        await request(0.0, "throttled")  # the same burst
        assert limiter.window == 12.0
        clock.now += 0.2
        await request(0.0, "throttled")  # a new one
        assert limiter.window == 9.0

    asyncio.run(go())


def test_a_list_page_twilio_refused_is_a_transient_failure() -> None:
    from twilio.base.exceptions import TwilioException
    from twilio.http.response import Response

    from shared.failures import classify

    failure = classify(TwilioException("Unable to fetch page", Response(500, "oops")))
    assert (failure.kind, failure.reason, failure.http_status, failure.ambiguous) == (
        "transient", "Twilio answered HTTP 500 to a list request", 500, False)
