"""Twilio's concurrency limit, met for real: a Twilio double that answers 429 / 20429 beyond
N requests in flight, the app's REST client (its window and its in-invocation retries), and
the outbound worker on Azurite. Also: an answer that cannot be read after a create."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

from shared.credentials import CredentialCache, EnvironmentSource
from shared.jobs import Job
from shared.ledger import TableLedger
from shared.limiter import AdaptiveLimiter
from shared.outbound import OutboundProcessor, QueueItem
from shared.settings import Settings
from shared.storage import Storage
from shared.twilio_rest import RoutedHttpClient, TwilioApi, TwilioThrottled, throttle_budget
from tests.doubles import Reply, TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM, MemoryQueues, env

TO = "+15551230000"


def api(double: TwilioDouble, ceiling: int = 16, seed: int = 1) -> TwilioApi:
    client = RoutedHttpClient(double.url, limiter=AdaptiveLimiter(ceiling),
                              rng=random.Random(seed))
    return TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                     http_client=client)


def sms(i: int) -> Job:
    return Job("sms", f"+1555123{i:04d}", body=f"burst {i}")


def test_a_burst_beyond_the_account_limit_is_sent_once_each_without_failing() -> None:
    """40 sends at once against a limit of 4: every one is accepted once, the 429s were
    retried inside the call, and the window came down from its ceiling."""
    with TwilioDouble(max_in_flight=4, latency=0.05, retry_after=None) as double:
        async def burst() -> tuple[list[Any], RoutedHttpClient]:
            client = api(double)
            try:
                sent = await asyncio.gather(*(client.send(sms(i), FROM) for i in range(40)))
                return sent, client.http_client
            finally:
                await client.close()

        sent, http = asyncio.run(burst())
    accepted = double.sent()
    assert len(accepted) == 40 and len({r.form["To"][0] for r in accepted}) == 40
    assert len({s.sid for s in sent}) == 40
    assert double.throttled > 0 and http.throttle_retries == double.throttled
    assert http.limiter.throttled == double.throttled
    assert http.limiter.window < 16  # it learned the account's limit


def test_retry_after_is_honoured() -> None:
    with TwilioDouble() as double:
        double.script = [Reply(429, {"code": 20429, "message": "Too Many Requests",
                                     "status": 429}, headers={"Retry-After": "2"})]

        async def one() -> float:
            client = api(double)
            start = time.monotonic()
            try:
                await client.send(sms(1), FROM)
            finally:
                await client.close()
            return time.monotonic() - start

        waited = asyncio.run(one())
    assert len(double.creates()) == 2 and len(double.sent()) == 1
    assert 2.0 <= waited < 4.0  # Retry-After plus at most the first jitter (0.25 s)


def test_throttled_past_the_budget_raises_for_the_caller_to_requeue() -> None:
    with TwilioDouble() as double:
        double.script = [Reply(429, {"code": 20429, "message": "Too Many Requests",
                                     "status": 429}, headers={"Retry-After": "1"})] * 5

        async def one() -> TwilioThrottled:
            client = api(double)
            try:
                with throttle_budget(1.5), pytest.raises(TwilioThrottled) as caught:
                    await client.send(sms(1), FROM)
                return caught.value
            finally:
                await client.close()

        exc = asyncio.run(one())
    assert (exc.status, exc.code, exc.retry_after) == (429, 20429, 1.0)
    assert double.sent() == []  # nothing was processed: safe to send again later


async def refusal_of_one_send(double: TwilioDouble) -> Any:
    """The exception one send raises (None if it was accepted)."""
    client = api(double)
    try:
        await client.send(sms(1), FROM)
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc
    finally:
        await client.close()
    return None


def test_a_bare_503_is_not_throttling() -> None:
    """Without Retry-After a 503 is an outage: answered to the caller at once."""
    with TwilioDouble() as double:
        double.script = [Reply(503)]
        exc = asyncio.run(refusal_of_one_send(double))
    assert not isinstance(exc, TwilioThrottled) and exc.status == 503
    assert len(double.creates()) == 1


def worker(storage_env: dict[str, str], double: TwilioDouble, **settings: str
           ) -> tuple[OutboundProcessor, Storage, TableLedger, MemoryQueues]:
    s = Settings.from_env(env(**storage_env, TWILIO_API_BASE_URL=double.url, **settings))
    storage = Storage(s.storage)
    ledger = TableLedger(lambda: storage.table(s.jobs_table_name))
    queues = MemoryQueues()
    twilio = TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                       double.url)
    return (OutboundProcessor(s, twilio, ledger, queues, settle_seconds=0.5, spread=round),
            storage, ledger, queues)


def test_an_answer_that_cannot_be_read_is_checked_at_twilio_not_sent_again(
        storage_env: dict[str, str]) -> None:
    """Twilio created the message, but its answer was a gateway's HTML page: the job is
    not sent a second time; the next attempt finds it at Twilio."""
    job = {"id": "garbled-1", "type": "sms", "to": TO, "body": "hello"}
    with TwilioDouble() as double:
        double.script = [Reply(action="accept_then_garble")]

        async def go() -> tuple[str, str, dict[str, Any]]:
            processor, storage, ledger, queues = worker(storage_env, double)
            try:
                first = await processor.process(QueueItem("m1", json.dumps(job)))
                [(copy, _)] = queues.messages[processor.settings.outbound_queue_name]
                await asyncio.sleep(0.6)  # the settle time
                second = await processor.process(QueueItem("m2", copy))
                return first.result, second.result, await ledger.get("garbled-1") or {}
            finally:
                await processor.sender.close()  # type: ignore[attr-defined]
                await ledger.close()
                await storage.close()

        first, second, row = asyncio.run(go())
        assert (first, second) == ("retry_scheduled", "sent")
        assert len(double.creates()) == 1  # created once, never again
    assert row["status"] == "sent" and row["sid"] == double.created[0]["sid"]
    assert "JSONDecodeError" in row["last_error"] and row["ambiguous"] == 1
    assert row["reconciled"].startswith("found SM")


def test_a_job_throttled_past_its_budget_comes_back_without_using_an_attempt(
        storage_env: dict[str, str]) -> None:
    job = {"id": "busy-account-1", "type": "sms", "to": TO, "body": "hello"}
    with TwilioDouble() as double:
        double.script = [Reply(429, {"code": 20429, "message": "Too Many Requests",
                                     "status": 429}, headers={"Retry-After": "30"})]

        async def go() -> tuple[Any, dict[str, Any], list[tuple[str, int]]]:
            processor, storage, ledger, queues = worker(storage_env, double)
            processor.throttle_budget_seconds = 1.0
            try:
                outcome = await processor.process(QueueItem("m1", json.dumps(job)))
                return (outcome, await ledger.get("busy-account-1") or {},
                        queues.messages[processor.settings.outbound_queue_name])
            finally:
                await processor.sender.close()  # type: ignore[attr-defined]
                await ledger.close()
                await storage.close()

        outcome, row, copies = asyncio.run(go())
    assert outcome.result == "retry_scheduled"
    [(copy, delay)] = copies
    assert json.loads(copy)["id"] == "busy-account-1"
    assert delay >= 30  # never before Twilio's Retry-After
    assert (row["status"], row["throttled"], row["throttle_streak"]) == ("retrying", 1, 1)
    assert row["attempts"] - row["throttled"] == 0  # no attempt used up
    assert "20429" in row["last_error"] and row.get("check_since", 0) == 0


def test_a_request_that_waits_too_long_for_the_window_is_not_sent_and_says_why() -> None:
    """With the window full past the attempt's budget, the request gives up before it is
    sent, as throttled (the job comes back later without using an attempt)."""
    with TwilioDouble(latency=1.5) as double:
        async def two() -> Any:
            client = api(double, ceiling=1)
            try:
                first = asyncio.create_task(client.send(sms(1), FROM))
                await asyncio.sleep(0.1)  # the first holds the only place
                with throttle_budget(0.3):
                    try:
                        await client.send(sms(2), FROM)
                    except TwilioThrottled as exc:
                        caught = exc
                await first
                return caught
            finally:
                await client.close()

        exc = asyncio.run(two())
    assert exc.code is None and "window" in exc.msg
    assert [r.form["To"] for r in double.creates()] == [[sms(1).to]]  # the second never sent


def test_a_503_with_retry_after_is_retried_for_a_read_but_not_for_a_create() -> None:
    """Twilio may have created a message before a 503: a create is answered to the caller
    (the worker looks at Twilio before sending again); a list is simply asked again."""
    unavailable = Reply(503, {"code": 20503, "message": "Service Unavailable", "status": 503},
                        headers={"Retry-After": "1"})
    with TwilioDouble() as double:
        double.script = [unavailable]
        exc = asyncio.run(refusal_of_one_send(double))
        assert not isinstance(exc, TwilioThrottled) and exc.status == 503
        assert len(double.creates()) == 1
        from shared.failures import classify
        assert classify(exc, sending=True).ambiguous

        http = RoutedHttpClient(double.url, limiter=AdaptiveLimiter(4), rng=random.Random(1))
        double.script = []

        async def read() -> tuple[int, int]:
            calls = 0
            original = double.handle

            def handle(req: Any, handler: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls == 1:
                    return 503, {"Content-Type": "application/json", "Retry-After": "0"}, b"{}"
                return original(req, handler)

            double.handle = handle  # type: ignore[method-assign]
            try:
                res = await http.request("GET", f"{double.url}/2010-04-01/Accounts/{ACCOUNT_SID}"
                                                "/Messages.json")
                return res.status_code, calls
            finally:
                await http.close()

        status, calls = asyncio.run(read())
    assert (status, calls) == (200, 2)
