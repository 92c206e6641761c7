"""Every REST call the app makes, validated by Prism against Twilio's official spec."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.credentials import CredentialCache, EnvironmentSource
from shared.jobs import Job
from shared.twilio_rest import TwilioApi
from tests.doubles import TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM

TO = "+15551234567"
JOBS = [
    Job("sms", TO, body="Your table is ready.", status_callback="https://cb.example/s"),
    Job("call", TO, say="This is a reminder.", voice="Polly.Joanna", language="en-US"),
    Job("call", TO, twiml="<Response><Play>https://a.example/r.mp3</Play></Response>"),
    Job("call", TO, url="https://a.example/twiml", status_callback="https://cb.example/s"),
]


def api(base_url: str) -> TwilioApi:
    return TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)), base_url)


async def send_all(base_url: str, jobs: list[Job]) -> list[Any]:
    client = api(base_url)
    try:
        return [await client.send(job, FROM) for job in jobs]
    finally:
        await client.close()


@pytest.mark.parametrize("job", JOBS, ids=["sms", "call-say", "call-twiml", "call-url"])
def test_prism_accepts_each_request(prism_recorder: TwilioDouble, job: Job) -> None:
    [sent] = asyncio.run(send_all(prism_recorder.url, [job]))
    [request] = prism_recorder.creates()
    assert request.status == 201, request.body
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/" + (
        "Messages.json" if job.type == "sms" else "Calls.json")
    assert sent.sid.startswith("SM" if job.type == "sms" else "CA")
    form = request.form
    assert (form["To"], form["From"]) == ([TO], [FROM])
    if job.say:
        assert form["Twiml"] == ['<?xml version="1.0" encoding="UTF-8"?><Response><Say '
                                 'language="en-US" voice="Polly.Joanna">This is a reminder.'
                                 "</Say></Response>"]


def test_mms_media_urls_sent_as_repeated_fields(twilio_double: TwilioDouble) -> None:
    # Prism reads repeated MediaUrl fields as one string and refuses them, so MMS is
    # checked against our own double.
    job = Job("sms", TO, media_url=("https://a.example/1.png", "https://a.example/2.png"))
    asyncio.run(send_all(twilio_double.url, [job]))
    [request] = twilio_double.creates("Messages")
    assert request.form["MediaUrl"] == ["https://a.example/1.png", "https://a.example/2.png"]
    assert "Body" not in request.form


def test_one_session_reused_across_jobs(twilio_double: TwilioDouble) -> None:
    asyncio.run(send_all(twilio_double.url, [JOBS[0]] * 5))
    assert len(twilio_double.creates()) == 5
    assert twilio_double.connections == 1
