"""The HTTP triggers, called with real `func.HttpRequest` objects."""

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared import runtime
from shared.credentials import CredentialCache, TwilioCredentials
from shared.runtime import Runtime
from shared.webhooks import Webhooks
from tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MemoryLedger,
    MemoryQueues,
    env,
    http_request,
    settings,
    sign,
    trigger,
)

XML = '<?xml version="1.0" encoding="UTF-8"?>'
BASE = "http://localhost:7071/api"
CALL = {"CallSid": "CA" + "2" * 32, "From": "+15551234567", "To": "+15005550006"}


def call(name: str, req: Any) -> Any:
    return asyncio.run(trigger(name)(req))


def build(**overrides: str) -> Runtime:
    return Runtime.build(settings(**overrides), ledger=MemoryLedger(), queues=MemoryQueues())


@pytest.fixture(autouse=True)
def app_runtime() -> Iterator[Runtime]:
    rt = build()
    runtime.use(rt)
    yield rt
    asyncio.run(runtime.shutdown())


def use_settings(**overrides: str) -> Runtime:
    rt = build(**overrides)
    runtime.use(rt)
    return rt


def test_voice_says_the_greeting() -> None:
    res = call("voice", http_request(f"{BASE}/voice", CALL))
    assert res.status_code == 200
    assert res.mimetype == "text/xml"
    assert res.get_body().decode() == (
        XML + "<Response><Say>Hello. Thanks for calling. Goodbye.</Say></Response>")


def test_voice_greeting_from_settings_is_escaped() -> None:
    use_settings(VOICE_GREETING="Welcome to Bob & Sons <3")
    res = call("voice", http_request(f"{BASE}/voice", CALL))
    assert res.get_body().decode() == (
        XML + "<Response><Say>Welcome to Bob &amp; Sons &lt;3</Say></Response>")


def test_sms_auto_reply_and_no_reply() -> None:
    form = {"MessageSid": "SM" + "3" * 32, "From": "+15551234567", "To": "+15005550006",
            "Body": "hi"}
    res = call("sms", http_request(f"{BASE}/sms", form))
    assert res.get_body().decode() == (
        XML + "<Response><Message>Thanks for your message. We will get back to you soon."
        "</Message></Response>")
    use_settings(SMS_AUTO_REPLY="")
    res = call("sms", http_request(f"{BASE}/sms", form))
    assert (res.status_code, res.get_body().decode()) == (200, XML + "<Response />")


def test_message_twimlet_get() -> None:
    url = (f"{BASE}/twiml/message?Message%5B0%5D=Hello&Message%5B1%5D="
           "https%3A%2F%2Fx.test%2Fa.mp3&Message%5B2%5D=Bye&Voice=alice&Language=en-GB")
    res = call("twimlet", http_request(url, method="GET"))
    assert res.status_code == 200
    assert res.get_body().decode() == (
        XML + '<Response><Say language="en-GB" voice="alice">Hello</Say>'
        '<Play>https://x.test/a.mp3</Play><Say language="en-GB" voice="alice">Bye</Say>'
        "</Response>")


def test_message_twimlet_post_orders_indexes_numerically() -> None:
    url = f"{BASE}/twiml/message?Message%5B10%5D=ten&Message%5B2%5D=two&Message=first"
    res = call("twimlet", http_request(url, CALL))
    assert res.get_body().decode() == (
        XML + "<Response><Say>first</Say><Say>two</Say><Say>ten</Say></Response>")


def test_status_callback_logged_with_sid_status_and_error(caplog: Any) -> None:
    form = {"MessageSid": "SM" + "4" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    res = call("status", http_request(f"{BASE}/status", form))
    assert (res.status_code, res.get_body()) == (204, b"")
    record = next(r for r in caplog.records if r.name == "shared.webhooks")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"status callback sid=SM{'4' * 32} status=undelivered error_code=30003")


def test_health_needs_no_signature_and_shows_no_settings() -> None:
    import azure.functions as func

    res = trigger("health")(func.HttpRequest("GET", f"{BASE}/health", body=b""))
    assert res.status_code == 200
    assert json.loads(res.get_body()) == {"status": "ok", "version": "1.0.0",
                                          "job_schema_version": 1}


@pytest.mark.parametrize("name, route", [("voice", "voice"), ("sms", "sms"),
                                         ("twimlet", "twiml/message"),
                                         ("status", "status")])
def test_missing_and_wrong_signature_are_403_without_twiml(name: str, route: str) -> None:
    res = call(name, http_request(f"{BASE}/{route}", CALL, signature=""))
    assert (res.status_code, res.mimetype) == (403, "text/plain")
    assert res.get_body() == b"Missing X-Twilio-Signature header.\n"
    bad = sign(f"{BASE}/{route}", CALL, token="not-the-token")
    res = call(name, http_request(f"{BASE}/{route}", CALL, signature=bad))
    assert (res.status_code, res.get_body()) == (403, b"Invalid X-Twilio-Signature.\n")


def test_signature_for_other_params_is_refused() -> None:
    good = sign(f"{BASE}/voice", CALL)
    res = call("voice", http_request(f"{BASE}/voice", {**CALL, "From": "+15550000000"},
                                     signature=good))
    assert res.status_code == 403


def test_public_origin_behind_tls_termination_and_function_key() -> None:
    use_settings(WEBHOOK_BASE_URL="https://func-x.azurewebsites.net")
    seen = "http://169.254.1.1:8080/api/voice?code=k%3D%3D"
    public = "https://func-x.azurewebsites.net/api/voice?code=k%3D%3D"
    res = call("voice", http_request(seen, CALL, public_url=public))
    assert res.status_code == 200
    res = call("voice", http_request(seen, CALL))  # signed for the URL the worker saw
    assert res.status_code == 403


@pytest.mark.parametrize("body, content_type, status", [
    (b"From=%ff%fe", "application/x-www-form-urlencoded", 400),
    (b"\xff\xfe", "application/x-www-form-urlencoded", 400),
    (b"From=%2%2", "application/x-www-form-urlencoded", 400),
    (b"<xml/>", "application/xml", 415),
    (b"A=" + b"x" * (64 * 1024), "application/x-www-form-urlencoded", 413),
])
def test_malformed_requests_get_4xx(body: bytes, content_type: str, status: int) -> None:
    forged = "A" * 27 + "="  # the shape of a signature: the body is read
    req = http_request(f"{BASE}/sms", signature=forged, body=body,
                       headers={"Content-Type": content_type})
    res = call("sms", req)
    assert res.status_code == status
    assert b"Traceback" not in res.get_body()


def test_bad_configuration_is_503_without_details(caplog: Any, monkeypatch: Any) -> None:
    runtime.use(None)  # type: ignore[arg-type]  # built from the environment on first call
    for name, value in env(TWILIO_FROM_NUMBER="not-a-number").items():
        monkeypatch.setenv(name, value)
    res = call("voice", http_request(f"{BASE}/voice", CALL))
    assert res.status_code == 503
    assert res.get_body() == b"Service not configured; see the function's logs.\n"
    assert any("TWILIO_FROM_NUMBER must be an E.164" in r.getMessage() for r in caplog.records)


def test_a_configuration_error_logs_a_number_masked(caplog: Any, monkeypatch: Any) -> None:
    """Issue 19, point 10: the setting's value is echoed, a phone number only masked."""
    runtime.use(None)  # type: ignore[arg-type]  # built from the environment on first call
    for name, value in env(TWILIO_FROM_NUMBER="+1 555 123 4567").items():
        monkeypatch.setenv(name, value)
    assert call("voice", http_request(f"{BASE}/voice", CALL)).status_code == 503
    assert [r.getMessage() for r in caplog.records if r.name == "triggers.webhooks"] == [
        "configuration error: TWILIO_FROM_NUMBER must be an E.164 number such as "
        "+*******4567; got '+* *** *** 4567'."]


class RotatingSource:
    description = "test"

    def __init__(self) -> None:
        self.token = AUTH_TOKEN
        self.fetches = 0

    def fetch(self) -> TwilioCredentials:
        self.fetches += 1
        return TwilioCredentials(ACCOUNT_SID, self.token)


def test_rotated_token_is_picked_up_on_first_mismatch() -> None:
    source = RotatingSource()
    hooks = Webhooks(settings(), CredentialCache(source, min_refresh_seconds=0))
    from shared.webhooks import WebhookRequest
    from tests.helpers import form_body

    def request(token: str) -> WebhookRequest:
        return WebhookRequest("POST", f"{BASE}/voice",
                              {"content-type": "application/x-www-form-urlencoded",
                               "x-twilio-signature": sign(f"{BASE}/voice", CALL, token)},
                              form_body(CALL))

    assert asyncio.run(hooks.handle("voice", request(AUTH_TOKEN))).status == 200
    source.token = "rotated-token"
    assert asyncio.run(hooks.handle("voice", request("rotated-token"))).status == 200
    assert source.fetches == 2
    assert asyncio.run(hooks.handle("voice", request("rotated-token"))).status == 200
    assert source.fetches == 2  # cached again
