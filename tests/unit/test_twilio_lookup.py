"""The look at Twilio before a resend: which stored message is this job's."""

from __future__ import annotations

import pytest

from shared.jobs import Job
from shared.twilio_rest import _same_body

JOB = Job("sms", "+15551234567", body="Your code is 1234")


@pytest.mark.parametrize("stored, same", [
    ("Your code is 1234", True),
    # A trial account puts its notice before every message it sends.
    ("Sent from your Twilio trial account - Your code is 1234", True),
    ("Your code is 12345", False),
    ("Your code is 1234 (2)", False),
    (None, False),
])
def test_a_stored_body_is_the_jobs_as_twilio_stores_it(stored: str | None, same: bool) -> None:
    assert _same_body(stored, JOB) is same


def test_shortened_links_leave_the_recipient_and_the_time_to_decide() -> None:
    job = Job("sms", "+15551234567", body="Track it: https://example.com/t/1042",
              messaging_service_sid="MG" + "a" * 32, shorten_urls=True)
    assert _same_body("Track it: https://twil.io/abc123", job)
    assert _same_body("anything", Job("sms", "+15551234567", content_sid="HX" + "1" * 32))
