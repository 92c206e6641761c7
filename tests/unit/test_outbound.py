"""The outbound processor with fakes passed in: each path ends sent or accounted for."""

import asyncio
import base64
import datetime as dt
import json
import random
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st
from twilio.base.exceptions import TwilioRestException

from shared.credentials import CredentialsError
from shared.outbound import OutboundProcessor, QueueItem, retry_delay
from shared.storage import TransientStorageError
from shared.twilio_rest import Sent
from tests.helpers import FROM, FakeSender, MemoryLedger, MemoryQueues, settings

SMS = {"type": "sms", "to": "+15551234567", "body": "hi"}
REJECTED, POISON, OUTBOUND = ("twilio-outbound-rejected", "twilio-outbound-poison",
                              "twilio-outbound")


def twilio_error(status: int, code: int | None = None) -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/x", "refused", code)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(*script: Any, **overrides: str) -> tuple[OutboundProcessor, FakeSender, MemoryLedger,
                                                   MemoryQueues]:
    sender, ledger, queues = FakeSender(*script), MemoryLedger(), MemoryQueues()
    processor = OutboundProcessor(settings(**overrides), sender, ledger, queues, clock=Clock(),
                                  spread=round, rng=random.Random(7))
    return processor, sender, ledger, queues


def run(processor: OutboundProcessor, body: Any, msg_id: str = "m-1", dequeue: int = 1) -> Any:
    return asyncio.run(processor.process(QueueItem(msg_id, body, dequeue)))


def deliver(processor: OutboundProcessor, queues: MemoryQueues, first: int = 2) -> list[str]:
    """Delivers the copy last scheduled once its delay has passed (the processor's clock is a
    `Clock`), and so on while copies are scheduled; the results in order."""
    clock = processor.clock
    assert isinstance(clock, Clock)
    results: list[str] = []
    for n in range(first, first + 10):
        text, delay = queues.messages[OUTBOUND][-1]
        clock.now += delay
        outcome = run(processor, text, f"m-{n}")
        results.append(outcome.result)
        if outcome.result != "retry_scheduled":
            break
    return results


def test_sends_once_and_records_sid() -> None:
    processor, sender, ledger, queues = make()
    outcome = run(processor, json.dumps(SMS))
    assert (outcome.result, outcome.key) == ("sent", "msg-m-1")
    assert sender.calls[0][1] == FROM
    assert ledger.rows["msg-m-1"]["status"] == "sent"
    assert ledger.rows["msg-m-1"]["sid"] == outcome.sid
    assert queues.messages == {}


def test_base64_message_is_the_same_job() -> None:
    processor, sender, *_ = make()
    run(processor, base64.b64encode(json.dumps(SMS).encode()))
    assert sender.calls[0][0].body == "hi"


def test_redelivery_of_the_same_job_id_is_not_sent_again() -> None:
    processor, sender, *_ = make()
    job = json.dumps({**SMS, "id": "order-7"})
    assert run(processor, job, "m-1").result == "sent"
    assert run(processor, job, "m-2", dequeue=2).result == "duplicate"
    assert len(sender.calls) == 1


def test_invalid_job_goes_to_rejected_with_reason_and_original() -> None:
    processor, sender, _, queues = make()
    text = '{"type": "sms", "to": "+15551234567", "bodyy": "hi"}'
    outcome = run(processor, text, "m-9")
    assert outcome.result == "rejected"
    assert sender.calls == []
    [letter] = [json.loads(t) for t in queues.texts(REJECTED)]
    assert letter["original"] == text
    assert letter["kind"] == "invalid_job"
    assert letter["queue_message_id"] == "m-9"
    assert letter["reason"].startswith("unknown field(s) 'bodyy'")


def test_not_utf8_is_kept_byte_for_byte() -> None:
    processor, _, _, queues = make()
    run(processor, b"\xff\x00junk")
    [letter] = [json.loads(t) for t in queues.texts(REJECTED)]
    assert base64.b64decode(letter["original_base64"]) == b"\xff\x00junk"


def test_no_sender_number_is_rejected_not_dropped() -> None:
    processor, sender, _, queues = make(TWILIO_FROM_NUMBER=None)  # type: ignore[arg-type]
    assert run(processor, json.dumps(SMS)).result == "rejected"
    assert "TWILIO_FROM_NUMBER is not set" in json.loads(queues.texts(REJECTED)[0])["reason"]
    assert sender.calls == []


@pytest.mark.parametrize("code", [21211, 21610, 21614, 21608, 21612, 21606, 21635, 21617])
def test_permanent_twilio_errors_are_rejected_with_code(code: int) -> None:
    processor, sender, ledger, queues = make(twilio_error(400, code))
    assert run(processor, json.dumps(SMS)).result == "rejected"
    letter = json.loads(queues.texts(REJECTED)[0])
    assert (letter["kind"], letter["twilio_code"]) == ("twilio_permanent", code)
    assert ledger.rows["msg-m-1"]["status"] == "rejected"
    assert queues.texts(OUTBOUND) == []


@pytest.mark.parametrize("error, kind, delay", [
    # A 5xx to a create may come after Twilio created it (its error 20500): looked up first.
    (twilio_error(500, 20500), "transient", 30),
    (twilio_error(503), "transient", 30),
    (twilio_error(401, 20003), "transient", 10),
    (CredentialsError("vault throttled", transient=True), "transient", 10),
    (aiohttp.ClientConnectorError(SimpleNamespace(  # type: ignore[arg-type]
        ssl=None, host="api.twilio.com", port=443), OSError(111, "refused")), "transient", 10),
    # No answer: Twilio may still get the request; the retry looks there, and waits twice
    # the request timeout first.
    (TimeoutError(), "transient", 30),
    (aiohttp.ServerDisconnectedError(), "transient", 30),
    (ConnectionResetError(), "transient", 30),
    (twilio_error(400, 30001), "capacity", 60),
    (twilio_error(429, 21611), "capacity", 60),
])
def test_transient_errors_schedule_a_copy_with_the_same_key(error: Exception, kind: str,
                                                            delay: int) -> None:
    processor, sender, ledger, queues = make(error)
    assert run(processor, json.dumps(SMS)).result == "retry_scheduled"
    [(copy, scheduled)] = queues.messages[OUTBOUND]
    assert json.loads(copy) == {**SMS, "id": "msg-m-1"}
    assert scheduled == delay
    assert (delay == retry_delay(kind, 1)) is (ledger.rows["msg-m-1"]["check_since"] == 0.0)
    assert ledger.rows["msg-m-1"]["status"] == "retrying"
    # The copy is delivered and succeeds: one send recorded, under the same key. After no
    # answer, two looks at Twilio (a settle time apart) found nothing before it sent.
    ambiguous = ledger.rows["msg-m-1"]["check_since"] > 0
    expected = ["retry_scheduled", "sent"] if ambiguous else ["sent"]
    assert deliver(processor, queues) == expected
    assert ledger.rows["msg-m-1"]["attempts"] == 1 + len(expected)
    assert (len(sender.calls), len(sender.finds)) == (2, 2 if ambiguous else 0)


def test_growing_delays_then_poison_with_last_error() -> None:
    # Failures that never reached Twilio: no look there between the attempts.
    errors = [CredentialsError("vault throttled", transient=True)] * 5
    processor, sender, ledger, queues = make(*errors)
    text, delays = json.dumps({**SMS, "id": "j1"}), []
    for attempt in range(1, 6):
        outcome = run(processor, text, f"m-{attempt}")
        if outcome.result == "retry_scheduled":
            text, delay = queues.messages[OUTBOUND][-1]
            delays.append(delay)
    assert delays == [10, 30, 90, 270]
    assert outcome.result == "poisoned"
    [letter] = [json.loads(t) for t in queues.texts(POISON)]
    assert letter["kind"] == "retries_exhausted"
    assert letter["attempts"] == 5
    assert letter["reason"] == "Twilio credentials unavailable: vault throttled"
    assert ledger.rows["j1"]["status"] == "failed"
    assert len(sender.calls) == 5


def test_a_5xx_to_a_create_is_looked_up_before_the_next_send() -> None:
    """Twilio may have created the message before its 500 (error 20500): the copy looks
    at Twilio first, and finds it there."""
    processor, sender, ledger, queues = make(twilio_error(500, 20500))
    assert run(processor, json.dumps({**SMS, "id": "j5"}), "m-1").result == "retry_scheduled"
    assert ledger.rows["j5"]["check_since"] > 0 and ledger.rows["j5"]["ambiguous"] == 1
    sender.find_script = [Sent("SM" + "7" * 32, "queued")]
    assert deliver(processor, queues) == ["sent"]
    assert len(sender.calls) == 1 and ledger.rows["j5"]["sid"] == "SM" + "7" * 32


def make_clocked(*script: Any) -> tuple[OutboundProcessor, FakeSender, MemoryLedger,
                                        MemoryQueues, Clock]:
    clock = Clock()
    sender, ledger, queues = FakeSender(*script), MemoryLedger(clock), MemoryQueues()
    return OutboundProcessor(settings(), sender, ledger, queues, clock=clock, spread=round), sender, \
        ledger, queues, clock


def test_busy_claim_comes_back_after_the_lease_without_sending() -> None:
    processor, sender, ledger, queues, clock = make_clocked()
    job = json.dumps({**SMS, "id": "j2"})
    asyncio.run(ledger.claim("j2", "m-other"))  # another delivery is sending it
    clock.now += 20
    assert run(processor, job, "m-1").result == "in_progress"
    assert sender.calls == []
    # Not completed and forgotten: a copy comes back once the other claim's lease is over.
    [(copy, delay)] = queues.messages[OUTBOUND]
    assert (json.loads(copy), delay) == ({**SMS, "id": "j2"}, 40 + 5)


def test_a_claimant_that_died_midway_is_checked_at_twilio_then_not_resent() -> None:
    processor, sender, ledger, queues, clock = make_clocked()
    asyncio.run(ledger.claim("j3", "m-dead"))
    claimed_at = clock.now
    clock.now += 61  # its lease ran out: the process died between Twilio and the ledger
    sender.find_script = [Sent("SM" + "e" * 32, "sent")]
    outcome = run(processor, json.dumps({**SMS, "id": "j3"}), "m-2")
    assert (outcome.result, outcome.sid) == ("sent", "SM" + "e" * 32)
    assert sender.calls == []
    assert sender.finds[0][2] == claimed_at  # looked since the dead attempt began
    row = ledger.rows["j3"]
    assert (row["status"], row["sid"], row["check_since"]) == ("sent", "SM" + "e" * 32, 0.0)
    assert row["reconciled"] == "found SM" + "e" * 32 + " at Twilio"
    assert queues.messages == {}


def test_nothing_found_twice_at_twilio_is_sent_and_says_so() -> None:
    """A stalled Twilio answers a list as soon as it wakes, while the create it held is
    still being made: one look that finds nothing is not enough to send again."""
    processor, sender, ledger, queues, clock = make_clocked()
    asyncio.run(ledger.claim("j4", "m-dead"))
    clock.now += 61
    first_look = clock.now
    assert run(processor, json.dumps({**SMS, "id": "j4"}), "m-2").result == "retry_scheduled"
    assert sender.calls == []
    row = ledger.rows["j4"]
    assert (row["status"], row["absent_at"], row.get("last_error")) == (
        "retrying", first_look, None)
    copy, delay = queues.messages[OUTBOUND][-1]
    assert delay == 30  # SETTLE_SECONDS
    clock.now += delay
    assert run(processor, copy, "m-3").result == "sent"
    assert len(sender.calls) == 1 and len(sender.finds) == 2
    row = ledger.rows["j4"]
    assert row["reconciled"] == "nothing found at Twilio in two looks 30 s apart; sent again"
    assert (row["absent_at"], row["check_since"]) == (0.0, 0.0)


def test_the_second_look_finds_what_the_first_missed() -> None:
    processor, sender, ledger, queues, clock = make_clocked(TimeoutError())
    assert run(processor, json.dumps({**SMS, "id": "j4b"}), "m-1").result == "retry_scheduled"
    late = Sent("SM" + "b" * 32, "queued")  # Twilio created it after the first look
    sender.find_script = [None, late]
    assert deliver(processor, queues) == [
        "retry_scheduled", "sent"]
    assert len(sender.calls) == 1  # the timed-out request only
    assert (ledger.rows["j4b"]["sid"], ledger.rows["j4b"]["absent_at"]) == (late.sid, 0.0)


def test_a_redelivery_before_the_settle_time_looks_again_later() -> None:
    processor, sender, ledger, queues, clock = make_clocked()
    asyncio.run(ledger.claim("j4c", "m-dead"))
    clock.now += 61
    text = json.dumps({**SMS, "id": "j4c"})
    run(processor, text, "m-2")
    clock.now += 10  # the host delivered a copy early
    assert run(processor, text, "m-3").result == "retry_scheduled"
    assert queues.messages[OUTBOUND][-1][1] == 20  # the rest of the settle time
    assert sender.calls == []


def test_a_redelivery_of_its_own_message_continues_at_once() -> None:
    """The claim's insert reached the table, its answer was lost, the function raised: the
    host delivers the same message again, inside the claim's lease. It must go on (after two
    looks at Twilio), not take its own row for another delivery's and wait for the lease."""
    processor, sender, ledger, queues, clock = make_clocked()
    asyncio.run(ledger.claim("j5", "m-1"))
    clock.now += 30  # host.json visibilityTimeout: well inside the 60 s lease
    outcome = run(processor, json.dumps({**SMS, "id": "j5"}), "m-1", dequeue=2)
    assert (outcome.result, outcome.reason) == ("retry_scheduled",
                                                "nothing found at Twilio yet; looking once more")
    assert deliver(processor, queues) == ["sent"]
    assert len(sender.finds) == 2 and len(sender.calls) == 1
    assert ledger.rows["j5"]["status"] == "sent"


def test_a_timeout_after_sending_is_checked_before_the_retry_sends() -> None:
    processor, sender, ledger, queues, clock = make_clocked(TimeoutError())
    assert run(processor, json.dumps({**SMS, "id": "j6"}), "m-1").result == "retry_scheduled"
    row = ledger.rows["j6"]
    assert (row["status"], row["check_since"], row["ambiguous"]) == (
        "retrying", clock.now, 1)
    [(copy, _)] = queues.messages[OUTBOUND]
    sender.find_script = [Sent("SM" + "f" * 32, "queued")]  # Twilio had accepted it
    clock.now += 10
    assert run(processor, copy, "m-2").result == "sent"
    assert len(sender.calls) == 1  # the first, timed-out request only
    assert ledger.rows["j6"]["sid"] == "SM" + "f" * 32


def test_a_refusal_below_500_needs_no_check() -> None:
    """A 401 (a token rotated meanwhile) refused the request before Twilio acted."""
    processor, sender, ledger, queues, _ = make_clocked(twilio_error(401, 20003))
    run(processor, json.dumps({**SMS, "id": "j7"}), "m-1")
    assert ledger.rows["j7"]["check_since"] == 0.0
    [(copy, _)] = queues.messages[OUTBOUND]
    assert run(processor, copy, "m-2").result == "sent"
    assert sender.finds == []


def test_a_failed_check_keeps_the_job_pending_and_checks_again() -> None:
    processor, sender, ledger, queues, clock = make_clocked(TimeoutError())
    run(processor, json.dumps({**SMS, "id": "j8"}), "m-1")
    since = ledger.rows["j8"]["check_since"]
    sender.find_script = [twilio_error(503), None]
    copy, _ = queues.messages[OUTBOUND][-1]
    assert run(processor, copy, "m-2").result == "retry_scheduled"
    assert ledger.rows["j8"]["check_since"] == since
    assert "could not check at Twilio" in ledger.rows["j8"]["last_error"]
    assert queues.messages[OUTBOUND][-1][1] == 30  # no answer: Twilio may still hold it
    assert deliver(processor, queues, first=3) == ["retry_scheduled", "sent"]
    assert [f[2] for f in sender.finds] == [since, since, since]
    assert len(sender.calls) == 1 + 1


def test_a_failed_look_discards_an_earlier_not_found() -> None:
    processor, sender, ledger, queues, clock = make_clocked(TimeoutError())
    run(processor, json.dumps({**SMS, "id": "j8b"}), "m-1")
    sender.find_script = [None, TimeoutError(), None, None]
    results = deliver(processor, queues)
    # not found; no answer (starts over); not found; not found 30 s later: sent
    assert results == ["retry_scheduled"] * 3 + ["sent"]
    assert len(sender.finds) == 4 and len(sender.calls) == 2


def test_giving_up_while_a_check_is_pending_is_outcome_unknown() -> None:
    processor, sender, ledger, queues, _ = make_clocked(*[TimeoutError()] * 3)
    text = json.dumps({**SMS, "id": "j9"})
    assert run(processor, text, "m-1").result == "retry_scheduled"
    # Each timed-out send is followed by two looks that find nothing, then a send.
    results = deliver(processor, queues)
    assert results == ["retry_scheduled"] * 3 + ["poisoned"]
    assert (len(sender.calls), len(sender.finds)) == (3, 4)
    [letter] = [json.loads(t) for t in queues.texts(POISON)]
    assert (letter["kind"], letter["attempts"]) == ("outcome_unknown", 5)
    assert ledger.rows["j9"]["status"] == "unknown"
    assert ledger.rows["j9"]["ambiguous"] == 3


def test_sent_but_not_recorded_is_found_on_the_redelivery() -> None:
    class FailingLedger(MemoryLedger):
        fail_next_sent = True

        async def update(self, claim: Any, **fields: Any) -> Any:
            if fields.get("status") == "sent" and self.fail_next_sent:
                self.fail_next_sent = False
                raise TransientStorageError("storage unreachable")
            return await super().update(claim, **fields)

    clock = Clock()
    sender, ledger, queues = FakeSender(), FailingLedger(clock), MemoryQueues()
    processor = OutboundProcessor(settings(), sender, ledger, queues, clock=clock, spread=round)
    text = json.dumps({**SMS, "id": "j10"})
    with pytest.raises(TransientStorageError):
        run(processor, text, "m-1")
    assert ledger.rows["j10"]["status"] == "sending"
    first_sid = f"SM{1:032x}"
    sender.find_script = [Sent(first_sid, "sent")]
    assert run(processor, text, "m-1", dequeue=2).result == "sent"
    assert ledger.rows["j10"]["sid"] == first_sid
    assert len(sender.calls) == 1


def test_a_callback_sid_on_the_row_is_no_proof_the_job_was_sent() -> None:
    """A captured status callback re-aimed at this job's URL could put any SID there: the
    check looks at Twilio itself."""
    processor, sender, ledger, _, clock = make_clocked(TimeoutError())
    text = json.dumps({**SMS, "id": "j11"})
    run(processor, text, "m-1")
    asyncio.run(ledger.record_status("j11", twilio_status="sent", callback_sid="SM" + "c" * 32))
    assert run(processor, text, "m-2").result == "retry_scheduled"  # nothing found yet
    assert len(sender.finds) == 1 and ledger.rows["j11"]["status"] == "retrying"
    assert len(sender.calls) == 1


def test_an_attempt_that_outlives_its_lease_leaves_the_row_to_its_successor() -> None:
    clock = Clock()
    ledger = MemoryLedger(clock)

    class SlowSender(FakeSender):
        async def send(self, job: Any, from_number: str) -> Sent:
            clock.now += 61
            await ledger.claim("j12", "m-other")  # the lease ran out: another took over
            return await super().send(job, from_number)

    processor = OutboundProcessor(settings(), SlowSender(), ledger, MemoryQueues(),
                                  clock=clock)
    assert run(processor, json.dumps({**SMS, "id": "j12"}), "m-1").result == "in_progress"
    assert ledger.rows["j12"]["message_id"] == "m-other"
    assert ledger.rows["j12"]["status"] == "sending"


@pytest.mark.parametrize("error", [
    RuntimeError("bug"),
    json.JSONDecodeError("Expecting value", "<html>Bad gateway</html>", 0),  # a 201 not JSON
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
])
def test_an_unexplained_error_from_the_send_is_checked_at_twilio_before_a_resend(
        error: Exception) -> None:
    """The request may have reached Twilio (its answer could not be read): the next attempt
    looks there first, like after a timeout; and the worker does not raise."""
    processor, sender, ledger, queues = make(error)
    outcome = run(processor, json.dumps(SMS))
    assert outcome.result == "retry_scheduled"
    row = ledger.rows["msg-m-1"]
    assert row["status"] == "retrying" and row["check_since"] > 0 and row["ambiguous"] == 1
    assert type(error).__name__ in row["last_error"]
    [(_, delay)] = queues.messages[OUTBOUND]
    assert delay >= processor.settle_seconds
    sender.find_script = [Sent("SM" + "9" * 32, "queued")]  # Twilio had it
    assert deliver(processor, queues) == ["sent"]
    assert len(sender.calls) == 1  # not sent again
    assert ledger.rows["msg-m-1"]["sid"] == "SM" + "9" * 32


def test_concurrent_deliveries_send_once() -> None:
    class SlowSender(FakeSender):
        async def send(self, job: Any, from_number: str) -> Sent:
            await asyncio.sleep(0.01)
            return await super().send(job, from_number)

    sender, ledger, queues = SlowSender(), MemoryLedger(), MemoryQueues()
    processor = OutboundProcessor(settings(), sender, ledger, queues)
    text = json.dumps({**SMS, "id": "same"})

    async def both() -> list[Any]:
        return await asyncio.gather(*(processor.process(QueueItem(f"m{i}", text))
                                      for i in range(5)))

    results = sorted(o.result for o in asyncio.run(both()))
    assert results == ["in_progress"] * 4 + ["sent"]
    assert len(sender.calls) == 1


def test_default_status_callback_points_at_our_status_route() -> None:
    processor, sender, ledger, queues = make(twilio_error(503),
                                             WEBHOOK_BASE_URL="https://func-x.azurewebsites.net")
    run(processor, json.dumps({**SMS, "id": "order:7"}))
    assert sender.calls[0][0].status_callback == (
        "https://func-x.azurewebsites.net/api/status?job=order%3A7")
    [(copy, _)] = queues.messages[OUTBOUND]
    assert "status_callback" not in json.loads(copy)  # the retry copy stays the producer's job
    run(processor, json.dumps({**SMS, "status_callback": "https://mine.example/s"}))
    assert sender.calls[1][0].status_callback == "https://mine.example/s"


def test_an_id_that_was_refused_is_not_sent_again() -> None:
    processor, sender, ledger, queues = make(twilio_error(400, 21211))
    job = json.dumps({**SMS, "id": "refused-1"})
    assert run(processor, job, "m-1").result == "rejected"
    assert run(processor, job, "m-2").result == "duplicate"
    assert len(sender.calls) == 1
    assert run(processor, json.dumps({**SMS, "id": "refused-1-again"}), "m-3").result == "sent"


def test_a_scheduled_job_whose_retry_falls_outside_the_window_ends_its_row() -> None:
    """send_at is checked after the claim: a retry copy that comes back less than 15
    minutes before send_at is rejected, and its row says so (it used to stay `retrying`)."""
    clock = Clock(now=1_700_000_000.0)
    sender, ledger, queues = FakeSender(twilio_error(401, 20003)), MemoryLedger(clock), MemoryQueues()
    processor = OutboundProcessor(settings(TWILIO_MESSAGING_SERVICE_SID="MG" + "a" * 32),
                                  sender, ledger, queues, clock=clock)
    send_at = dt.datetime.fromtimestamp(clock.now + 16 * 60, dt.UTC).isoformat()
    job = {**SMS, "id": "remind-1", "send_at": send_at}
    assert run(processor, json.dumps(job), "m-1").result == "retry_scheduled"
    copy, delay = queues.messages[OUTBOUND][-1]
    clock.now += 120  # the retry: 14 minutes before send_at
    assert run(processor, copy, "m-2").result == "rejected"
    letter = json.loads(queues.texts(REJECTED)[-1])
    assert (letter["kind"], letter["job_key"]) == ("invalid_job", "remind-1")
    assert letter["reason"].startswith("field 'send_at':")
    assert ledger.rows["remind-1"]["status"] == "rejected"
    assert len(sender.calls) == 1


def test_leases_and_timeouts_keep_their_order() -> None:
    """The relations the exactly-once design rests on (docs/reliability.md: leases and visibility): a
    claim outlasts an attempt, an attempt holds a Twilio request and a look-up, a host
    invocation outlasts an attempt, and a timed-out request has landed before it is looked
    up."""
    import json as _json
    from pathlib import Path

    from devhost.host import DevHost, _timespan
    from shared.ledger import ATTEMPT_SECONDS, LEASE_SECONDS
    from shared.outbound import SETTLE_SECONDS
    from shared.twilio_rest import REQUEST_TIMEOUT_SECONDS

    host = _json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert ATTEMPT_SECONDS < LEASE_SECONDS
    assert 2 * REQUEST_TIMEOUT_SECONDS <= ATTEMPT_SECONDS
    assert _timespan(host["functionTimeout"], 0) > LEASE_SECONDS
    assert SETTLE_SECONDS >= 2 * REQUEST_TIMEOUT_SECONDS
    assert DevHost.__init__.__kwdefaults__["message_lease_seconds"] > LEASE_SECONDS  # type: ignore[index]


# -- any message, whatever its bytes, ends in exactly one place -----------------------------

HOSTILE = {
    "a 5,000-digit number": '{"type": "sms", "to": "+15551234567", "body": "x", '
                            '"validity_period": ' + "9" * 5000 + "}",
    "a lone surrogate": '{"type": "sms", "to": "+15551234567", "body": "hi \\ud800"}',
    "a lone surrogate in a field name": '{"type": "sms", "to": "+15551234567", "\\udfff": 1}',
    "NaN": '{"type": "sms", "to": "+15551234567", "body": "x", "validity_period": NaN}',
    "Infinity": '{"type": "call", "to": "+15551234567", "say": "x", "timeout": Infinity}',
    "nested deeply": "[" * 100_000 + "]" * 100_000,
    "not UTF-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_job_is_rejected_with_a_reason_and_a_log_line(
        body: str | bytes, caplog: pytest.LogCaptureFixture) -> None:
    processor, sender, ledger, queues = make()
    outcome = run(processor, body)
    assert outcome.result == "rejected" and sender.calls == []
    [text] = queues.texts(REJECTED)
    letter = json.loads(text)
    assert letter["kind"] == "invalid_job" and letter["reason"]
    assert set(queues.messages) == {REJECTED}
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead_letter")]
    assert "kind=invalid_job" in line
    line.encode("utf-8")  # a log line every handler can write


@settings_hypothesis(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() |
                              st.text(max_size=20),
                              lambda inner: st.lists(inner, max_size=4) |
                              st.dictionaries(st.sampled_from(
                                  ["type", "to", "body", "id", "say", "from", "media_url",
                                   "validity_period", "send_at", "x"]), inner, max_size=5),
                              max_leaves=12).map(lambda d: json.dumps(d))))
def test_any_message_ends_in_exactly_one_place(body: str | bytes) -> None:
    processor, sender, ledger, queues = make()
    outcome = run(processor, body)
    places = ({"sent"} if sender.calls else set()) | set(queues.messages)
    assert outcome.result in ("sent", "rejected")
    assert places == ({"sent"} if outcome.result == "sent" else {REJECTED}), places
    for text in queues.texts(REJECTED):
        assert json.loads(text)["reason"]
