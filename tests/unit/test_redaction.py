"""Phone numbers in log lines are masked to their last four digits (issue 19, point 10);
the dead-letter envelope keeps them whole for operators."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException

from shared import deadletters, failures, jobs, redaction
from shared.credentials import CredentialCache, EnvironmentSource
from shared.webhooks import Webhooks
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, MemoryLedger, MemoryQueues, settings
from tests.unit.test_webhook_guards import post


@pytest.mark.parametrize("text, masked", [
    ("to=+15551234567", "to=+*******4567"),
    ("From whatsapp:+447700900123 to +15005550006.", "From whatsapp:+********0123 to "
                                                     "+*******0006."),
    ("caller sip:+14155550122@attacker.sip.twilio.com", "caller sip:+*******0122@attacker"
                                                        ".sip.twilio.com"),
    ("client:14155550122 and '4155550122'", "client:*******0122 and '******0122'"),
    ('got "(415) 555-0122", "415.555.0122" or 415 555 0122',
     'got "(***) ***-0122", "***.***.0122" or *** *** 0122'),
    ("+1 (415) 555-0122", "+* (***) ***-0122"),
    # Not phone numbers: SIDs, ids, dates, times, counts, queue message ids.
    ("sent as SM00000000000000000000000000000001 (message 4f1c2d3e-0000-4000-8000-"
     "123456789012, attempt 2)", None),
    ("job conference-CA11111111111111111111111111111111-3 at "
     "2026-12-04T15:10:00+00:00 in 1234567 us", None),
    ("job_key=order-15551234567 twilio_code=21211", None),
])
def test_mask_keeps_the_last_four_digits_of_every_number(text: str, masked: str | None
                                                          ) -> None:
    assert redaction.mask(text) == (text if masked is None else masked)


NUMBERS = ("+15551234567", "5551234567", "+15005550006", "5005550006", "+15559990000",
           "5559990000", "4155550122")


def full_numbers(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record's final text (message and traceback) that still holds a whole number."""
    return [text for r in caplog.records
            for text in (r.getMessage(), r.exc_text or "")
            if any(n in text for n in NUMBERS)]


class FailingQueues(MemoryQueues):
    """Storage that fails quoting what it was given, as some SDK errors quote a request."""

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        raise RuntimeError(f"could not write {text}")


def test_webhook_and_dead_letter_log_lines_hold_no_whole_number(
        caplog: pytest.LogCaptureFixture) -> None:
    sms = {"MessageSid": "SM" + "5" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551234567",
           "To": "+15005550006", "Body": "call me on 4155550122"}
    status = {"MessageSid": "SM" + "6" * 32, "MessageStatus": "undelivered",
              "ErrorCode": "30003", "To": "+15551234567", "From": "+15005550006"}
    voicemail = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT_SID,
                 "From": "+15551234567", "To": "+15005550006",
                 "RecordingUrl": "https://api.twilio.com/x", "RecordingSid": "RE" + "1" * 32}

    def hooks(queues: Any) -> Webhooks:
        return Webhooks(settings(WEBHOOK_BASE_URL="https://func-x.azurewebsites.net"),
                        CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                        MemoryLedger(), queues)

    async def drive() -> list[int]:
        good, failing = hooks(MemoryQueues()), hooks(FailingQueues())
        answers = []
        for hook in (good, failing):
            for route, form, query in [
                    ("sms", sms, ""), ("status", status, ""),
                    ("twiml/voicemail", voicemail, "Notify=%2B15559990000&Transcribe=false&Recorded=true"),
                    ("twiml/voicemail", {}, "Email=a%40example.com&Notify=5559990000")]:
                answers.append((await hook.handle(route, post(route, form, query=query))).status)
        return answers

    assert asyncio.run(drive()) == [200, 204, 200, 200, 503, 503, 503, 200]
    # A rejected job and a Twilio refusal, as their dead-letter lines are written.
    try:
        jobs.parse(json.dumps({"type": "sms", "to": "5551234567", "body": "hi"}))
    except jobs.JobRejected as exc:
        invalid = str(exc)
    refused = failures.classify(TwilioRestException(
        400, "https://api.twilio.com/2010-04-01/Accounts/AC.../Messages.json",
        msg="The 'To' number +15551234567 is not a valid phone number.", code=21211))
    assert refused is not None
    for kind, reason, code in [("invalid_job", invalid, None),
                               ("twilio_permanent", refused.reason, 21211)]:
        deadletters.log_dead_letter(kind=kind, job_key="order-1", twilio_code=code,
                                    queue="twilio-outbound-rejected", reason=reason)

    assert full_numbers(caplog) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.deadletters"]
    assert lines == [
        "dead_letter kind=invalid_job job_key=order-1 twilio_code=- "
        "queue=twilio-outbound-rejected reason=field 'to': \"******4567\" is not an E.164 "
        "number like +*******4567",
        "dead_letter kind=twilio_permanent job_key=order-1 twilio_code=21211 "
        "queue=twilio-outbound-rejected reason=Twilio answered HTTP 400, error 21211: The "
        "'To' number +*******4567 is not a valid phone number."]
    failed = [r for r in caplog.records if r.getMessage().startswith("webhook ")]
    assert len(failed) == 3 and all("RuntimeError: could not write {" in (r.exc_text or "")
                                    for r in failed)


def test_the_dead_letter_envelope_keeps_numbers_whole() -> None:
    """What operators replay from: masking is for log lines only."""
    original = json.dumps({"type": "sms", "to": "+15551234567", "body": "hi"})
    doc = json.loads(deadletters.envelope(
        kind="twilio_permanent", reason="The 'To' number +15551234567 is not valid.",
        original=original, queue_message_id="m1", job_key="k", twilio_code=21211,
        dequeue_count=1, at=0.0))
    assert (doc["reason"], doc["original"]) == ("The 'To' number +15551234567 is not valid.",
                                                original)


def test_a_logger_gets_the_filter_once_and_a_bad_format_is_left_to_logging() -> None:
    log = redaction.logger("tests.redaction")
    assert redaction.logger("tests.redaction") is log
    assert [type(f) for f in log.filters] == [redaction.MaskNumbers]
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d numbers", ("many",), None)
    assert redaction.MaskNumbers().filter(record) and record.args == ("many",)


def test_account_sids_in_log_lines_and_tracebacks_are_redacted(
        caplog: pytest.LogCaptureFixture) -> None:
    log = redaction.logger("shared.test_redaction")
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    try:
        raise OSError(f"Cannot connect to {url}")
    except OSError:
        log.exception("request to %s failed for +15551234567", url)
    [record] = caplog.records
    assert record.getMessage() == ("request to https://api.twilio.com/2010-04-01/Accounts/AC…/"
                                   "Messages.json failed for +*******4567")
    assert ACCOUNT_SID not in (record.exc_text or "") and "Accounts/AC…" in record.exc_text
    assert redaction.redact(f"x {ACCOUNT_SID} y") == "x AC… y"
