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
MG = "MG" + "0123456789abcdef" * 2
HX = "HX" + "0123456789abcdef" * 2
WA_FROM = "whatsapp:+15005550006"
CB = "https://cb.example/s"
SAY = ('<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-US" '
       'voice="Polly.Joanna">This is a reminder.</Say></Response>')
JOBS = [
    Job("sms", TO, body="Your table is ready.", status_callback=CB),
    Job("call", TO, say="This is a reminder.", voice="Polly.Joanna", language="en-US"),
    Job("call", TO, twiml="<Response><Play>https://a.example/r.mp3</Play></Response>"),
    Job("call", TO, url="https://a.example/twiml", status_callback=CB),
]
# Every new option, with the form Prism must receive (as Twilio's spec names each field).
OPTIONS: dict[str, tuple[Job, str | None, dict[str, list[str]]]] = {
    "messaging-service": (
        Job("sms", TO, body="Sale today", messaging_service_sid=MG, shorten_urls=True,
            validity_period=600, status_callback=CB), None,
        {"To": [TO], "MessagingServiceSid": [MG], "Body": ["Sale today"],
         "ShortenUrls": ["true"], "ValidityPeriod": ["600"], "StatusCallback": [CB]}),
    "scheduled": (
        Job("sms", TO, body="Reminder", messaging_service_sid=MG,
            send_at="2031-03-01T09:00:00+01:00"), FROM,
        {"To": [TO], "From": [FROM], "MessagingServiceSid": [MG], "Body": ["Reminder"],
         "ScheduleType": ["fixed"], "SendAt": ["2031-03-01T08:00:00Z"]}),
    "whatsapp-template": (
        Job("sms", "whatsapp:" + TO, content_sid=HX, content_variables={"1": "Ada"}),
        WA_FROM,
        {"To": ["whatsapp:" + TO], "From": [WA_FROM], "ContentSid": [HX],
         "ContentVariables": ['{"1":"Ada"}']}),
    "whatsapp-text": (
        Job("sms", "whatsapp:" + TO, body="Your order shipped."), WA_FROM,
        {"To": ["whatsapp:" + TO], "From": [WA_FROM], "Body": ["Your order shipped."]}),
    "call-amd": (
        Job("call", TO, say="This is a reminder.", voice="Polly.Joanna", language="en-US",
            machine_detection="DetectMessageEnd", machine_detection_timeout=30,
            async_amd=True, async_amd_status_callback=CB, timeout=25, time_limit=600,
            record=True, status_callback=CB, caller_id=FROM), FROM,
        {"To": [TO], "From": [FROM], "Twiml": [SAY], "StatusCallback": [CB],
         "MachineDetection": ["DetectMessageEnd"], "MachineDetectionTimeout": ["30"],
         "AsyncAmd": ["true"], "AsyncAmdStatusCallback": [CB], "Timeout": ["25"],
         "TimeLimit": ["600"], "Record": ["true"], "RecordingStatusCallback": [CB],
         "CallerId": [FROM]}),
    # Twilio ignores MachineDetection beside SendDigits: the job schema allows one of them.
    "call-digits": (
        Job("call", TO, url="https://a.example/twiml", send_digits="ww1234#"), FROM,
        {"To": [TO], "From": [FROM], "Url": ["https://a.example/twiml"],
         "SendDigits": ["ww1234#"]}),
}


def api(base_url: str) -> TwilioApi:
    return TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)), base_url)


async def send_all(base_url: str, jobs: list[Job], sender: str | None = FROM) -> list[Any]:
    client = api(base_url)
    try:
        return [await client.send(job, sender) for job in jobs]
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
        assert form["Twiml"] == [SAY]


@pytest.mark.parametrize("name", OPTIONS)
def test_prism_accepts_each_sending_option(prism_recorder: TwilioDouble, name: str) -> None:
    job, sender, form = OPTIONS[name]
    [sent] = asyncio.run(send_all(prism_recorder.url, [job], sender))
    [request] = prism_recorder.creates()
    assert request.status == 201, request.body  # Prism checked it against Twilio's spec
    assert request.form == form
    assert sent.sid.startswith("SM" if job.type == "sms" else "CA")


def test_whatsapp_media_url_sent_as_one_field(twilio_double: TwilioDouble) -> None:
    # Prism refuses any MediaUrl (see below): checked against our own double.
    job = Job("sms", "whatsapp:" + TO, body="Your label", media_url=("https://a.example/l.pdf",))
    asyncio.run(send_all(twilio_double.url, [job], WA_FROM))
    [request] = twilio_double.creates("Messages")
    assert request.form == {"To": ["whatsapp:" + TO], "From": [WA_FROM], "Body": ["Your label"],
                            "MediaUrl": ["https://a.example/l.pdf"]}


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
