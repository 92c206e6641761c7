"""The local Twilio API double (Prism behind devhost.twilio_front) takes what Twilio takes,
MMS included, and still refuses what Twilio's spec refuses."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost import services
from shared.credentials import CredentialCache, EnvironmentSource
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
            return await api.send(job, FROM)
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
