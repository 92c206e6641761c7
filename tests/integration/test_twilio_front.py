"""The local Twilio API double (Prism behind devhost.twilio_front) takes what Twilio takes,
MMS included, still refuses what Twilio's spec refuses, and answers Twilio's magic test
numbers with the errors Twilio documents for them."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from twilio.base.exceptions import TwilioRestException

from devhost import services
from shared.credentials import CredentialCache, EnvironmentSource
from shared.failures import classify
from shared.jobs import Job
from shared.twilio_rest import Sent, TwilioApi
from tests.doubles import TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM

TO = "+15551234567"
AUTH = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


@pytest.fixture(scope="module")
def front(prism: services.Service, service_logs: Path) -> Iterator[str]:
    svc = services.start_twilio_front(service_logs / "front",
                                      upstream=prism.env["TWILIO_API_BASE_URL"])
    yield svc.env["TWILIO_API_BASE_URL"]
    svc.stop()


def post(base: str, resource: str, body: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(f"{base}/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}",
                                 data=body.encode(), headers={
                                     "Authorization": AUTH,
                                     "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def send(base: str, job: Job) -> Sent:
    async def go() -> Sent:
        api = TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)), base)
        try:
            return await api.send(job, job.from_ or FROM)
        finally:
            await api.close()
    return asyncio.run(go())


@pytest.mark.parametrize("media", [("https://a.example/1.png",),
                                   ("https://a.example/1.png", "https://a.example/2.png")])
def test_mms_from_the_app_is_accepted(front: str, media: tuple[str, ...]) -> None:
    sent = send(front, Job("sms", TO, body="Order 1042 shipped.", media_url=media))
    assert sent.sid.startswith("SM")


def test_a_list_item_twilio_refuses_is_refused_naming_it(front: str) -> None:
    status, doc = post(front, "Messages.json", "To=%2B15551234567&From=%2B15005550006"
                       "&MediaUrl=https%3A%2F%2Fa.example%2F1.png&MediaUrl=not+a+url")
    assert status == 422
    assert doc["validation"] == [{"location": ["body", "MediaUrl", "1"], "severity": "Error",
                                  "code": "format", "message": "Request body property MediaUrl "
                                  "'not a url' is not a 'uri'"}]


@pytest.mark.parametrize(("body", "location"), [
    ("From=%2B15005550006&MediaUrl=https%3A%2F%2Fa.example%2F1.png", ["body"]),
    ("To=%2B15551234567&From=%2B15005550006&Body=x&StatusCallback=nope",
     ["body", "StatusCallback"]),
])
def test_prism_still_checks_everything_else(front: str, body: str, location: list[str]) -> None:
    status, doc = post(front, "Messages.json", body)
    assert status == 422
    assert [v["location"] for v in doc["validation"]] == [location]  # type: ignore[union-attr]


def test_other_list_fields_of_the_spec_work_too(front: str) -> None:
    status, doc = post(front, "Calls.json", "To=%2B15551234567&From=%2B15005550006"
                       "&Twiml=%3CResponse%2F%3E&StatusCallbackEvent=initiated"
                       "&StatusCallbackEvent=answered")
    assert status == 201 and str(doc["sid"]).startswith("CA")


def test_only_the_specs_list_fields_are_rewritten(service_logs: Path) -> None:
    with TwilioDouble() as upstream:
        svc = services.start_twilio_front(service_logs / "front-recorded", upstream=upstream.url)
        try:
            plain = "To=%2B15551234567&From=%2B15005550006&Body=a%20b%26c"
            assert post(svc.env["TWILIO_API_BASE_URL"], "Messages.json", plain)[0] == 201
            listed = plain + "&MediaUrl=https%3A%2F%2Fa.example%2F1.png"
            assert post(svc.env["TWILIO_API_BASE_URL"], "Messages.json", listed)[0] == 201
        finally:
            svc.stop()
        first, second = upstream.creates("Messages")
    assert first.body.decode() == plain  # byte for byte
    assert first.headers["Authorization"] == AUTH
    assert second.body.decode() == ("To=%2B15551234567&From=%2B15005550006&Body=a+b%26c"
                                    "&MediaUrl%5B0%5D=https%3A%2F%2Fa.example%2F1.png")


def test_prism_not_answering_is_a_502_not_a_crash(service_logs: Path) -> None:
    svc = services.start_twilio_front(service_logs / "front-nowhere",
                                      upstream=f"http://127.0.0.1:{services.free_port()}")
    try:
        status, doc = post(svc.env["TWILIO_API_BASE_URL"], "Messages.json",
                           "To=%2B15551234567&From=%2B15005550006&Body=x")
        assert status == 502 and str(doc["message"]).startswith("Prism at http://127.0.0.1:")
        assert svc.exited() is None
    finally:
        svc.stop()


# -- Twilio's magic test numbers (twilio.com/docs/iam/test-credentials) --------------------

def twilio_error(code: int, message: str) -> dict[str, object]:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": 400}


MAGIC = [  # resource, From, To: Twilio's error body
    ("Messages", "+15005550001", TO, twilio_error(
        21212, "The 'From' number +15005550001 is not a valid phone number, shortcode, or "
               "alphanumeric sender ID.")),
    ("Messages", "+15005550007", TO, twilio_error(
        21606, "The 'From' phone number provided (+15005550007) is not a valid "
               "message-capable Twilio phone number for this destination.")),
    ("Messages", "+15005550008", TO, twilio_error(
        21611, "This 'From' number has exceeded the maximum number of queued messages.")),
    ("Messages", FROM, "+15005550001", twilio_error(
        21211, "The 'To' number +15005550001 is not a valid phone number.")),
    ("Messages", FROM, "+15005550002", twilio_error(
        21612, "The 'To' phone number: +15005550002, is not currently reachable via SMS.")),
    ("Messages", FROM, "+15005550003", twilio_error(
        21408, "Permission to send an SMS has not been enabled for the region indicated by "
               "the 'To' number: +15005550003.")),
    ("Messages", FROM, "+15005550004", twilio_error(
        21610, "Attempt to send to unsubscribed recipient +15005550004.")),
    ("Messages", FROM, "+15005550009", twilio_error(
        21614, "'To' number +15005550009 is not a valid mobile number.")),
    ("Calls", "+15005550001", TO, twilio_error(
        21212, "The 'From' number +15005550001 is not a valid phone number, shortcode, or "
               "alphanumeric sender ID.")),
    ("Calls", FROM, "+15005550001", twilio_error(
        21217, "Phone number +15005550001 does not appear to be valid.")),
    ("Calls", FROM, "+15005550002", twilio_error(
        21214, "'To' phone number +15005550002 cannot be reached.")),
    ("Calls", FROM, "+15005550003", twilio_error(
        21215, "Account not authorized to call +15005550003. Perhaps you need to enable some "
               "international permissions.")),
    ("Calls", FROM, "+15005550004", twilio_error(21216, "Call blocked by Twilio: +15005550004.")),
]


def create_form(resource: str, sender: str, to: str) -> str:
    what = "Body=Hello" if resource == "Messages" else "Twiml=%3CResponse%2F%3E"
    return urlencode({"To": to, "From": sender}) + "&" + what


@pytest.mark.parametrize(("resource", "sender", "to", "error"), MAGIC,
                         ids=[f"{m[0]}-{m[3]['code']}" for m in MAGIC])
def test_a_magic_number_answers_twilios_error(front: str, resource: str, sender: str, to: str,
                                              error: dict[str, object]) -> None:
    assert post(front, f"{resource}.json", create_form(resource, sender, to)) == (400, error)


@pytest.mark.parametrize("resource", ["Messages", "Calls"])
def test_other_numbers_and_the_magic_sender_are_sent(front: str, resource: str) -> None:
    # +15005550006 is the magic sender that passes; other senders pass here too (local
    # settings name their own), and numbers a table does not hold as that field pass.
    for sender, to in ((FROM, TO), ("+15551230000", TO), (FROM, "+15005550006"),
                       (FROM, "+15005550008"), ("+15005550009", TO)):
        status, doc = post(front, f"{resource}.json", create_form(resource, sender, to))
        assert status == 201 and str(doc["sid"])[:2] in ("SM", "CA"), (sender, to, doc)


def test_a_magic_number_is_refused_only_after_prism_checked_the_request(front: str) -> None:
    status, doc = post(front, "Messages.json", "From=%2B15005550001&Body=no+recipient")
    assert status == 422 and [v["location"] for v in doc["validation"]] == [["body"]]  # type: ignore[union-attr]


@pytest.mark.parametrize(("job", "kind", "code"), [
    (Job("sms", "+15005550004", body="Hi"), "permanent", 21610),
    (Job("sms", "+15005550009", body="Hi"), "permanent", 21614),
    (Job("sms", TO, from_="+15005550007", body="Hi"), "permanent", 21606),
    (Job("sms", TO, from_="+15005550008", body="Hi"), "capacity", 21611),
    (Job("call", "+15005550003", say="Hi"), "permanent", 21215),
])
def test_the_app_classifies_what_the_double_answers(front: str, job: Job, kind: str,
                                                    code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        send(front, job)
    failure = classify(caught.value)
    assert failure is not None and (failure.kind, failure.twilio_code, failure.http_status) \
        == (kind, code, 400)
