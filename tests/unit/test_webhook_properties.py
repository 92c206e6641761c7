"""Property tests: whatever arrives at a webhook, the answer is a 4xx or valid TwiML,
never a 500; and Twilio's retries do not repeat side effects."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import Any
from urllib.parse import quote, urlencode
from xml.etree import ElementTree

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.credentials import CredentialCache, EnvironmentSource
from shared.twimlets import TWIMLETS
from shared.webhooks import WebhookRequest, Webhooks
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, MemoryLedger, MemoryQueues, sign
from tests.helpers import settings as app_settings

# More examples on demand: HYPOTHESIS_EXAMPLES=5000 scripts/test tests/unit
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "150"))
ROUTES = ["voice", "sms", "status"] + [f"twiml/{name}" for name in TWIMLETS]
BASE = "https://func-x.azurewebsites.net/api/"
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
fields = st.dictionaries(st.one_of(text, st.sampled_from(
    ["Message", "Message[0]", "Message[1]", "Message[999999]", "Message[]", "Voice", "Language",
     "Body", "From", "To", "MessageSid", "CallSid", "MessageStatus", "ErrorCode", "Twiml",
     "PhoneNumber", "PhoneNumbers[]", "PhoneNumbers[0]", "Timeout", "FailUrl", "Dial",
     "DialCallStatus", "Digits", "Options[1]", "Options[22]", "Password", "Moderators[]",
     "Music", "Music[0]", "Whisper", "Accepted", "Index", "RecordingUrl", "Notify", "Stage",
     "Transcribe", "TranscriptionText", "NumMedia", "MediaUrl0", "AllowedCallers[]",
     "HumanCheck", "PasswordTries", "Bucket", "TranscriptionStatus", "EnableSmsNotifications",
     "DialStatus", "Caller", "RecordingSid", "job"])),
    text, max_size=12)


def hooks() -> Webhooks:
    creds = CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN))
    return Webhooks(app_settings(WEBHOOK_BASE_URL="https://func-x.azurewebsites.net"), creds,
                    MemoryLedger(), MemoryQueues())


def check(response: Any) -> None:
    assert response.status in (200, 204, 400, 403, 413, 415), response
    if response.status == 200:
        root = ElementTree.fromstring(response.body.encode())
        assert root.tag == "Response"
    elif response.status >= 400:
        assert response.content_type.startswith("text/plain")
        assert "<Response" not in response.body


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), form=fields, query=fields,
       method=st.sampled_from(["POST", "GET"]), signed=st.booleans())
def test_signed_or_not_any_fields_get_4xx_or_twiml(route: str, form: dict[str, str],
                                                   query: dict[str, str], method: str,
                                                   signed: bool) -> None:
    url = BASE + route + ("?" + urlencode(query) if query else "")
    body = urlencode(form).encode() if method == "POST" else b""
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signed:
        headers["x-twilio-signature"] = sign(url, form if method == "POST" else None)
    response = asyncio.run(hooks().handle(route, WebhookRequest(method, url, headers, body)))
    check(response)
    if signed:
        # A 400 names what is wrong: a twimlet setting, a SID field, a missing status.
        assert response.status in (200, 204, 400)
    else:
        assert response.status == 403


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=3000),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json",
                                     "text/plain", "", "multipart/form-data; boundary=x",
                                     "application/x-www-form-urlencoded; charset=latin-1"]),
       raw_query=st.text(max_size=100).map(lambda s: quote(s, safe="=&%[]")))
def test_odd_bodies_and_queries_never_500(route: str, body: bytes, content_type: str,
                                          raw_query: str) -> None:
    url = BASE + route + "?" + raw_query
    for signature in (None, "x", sign(url)):
        headers = {"content-type": content_type}
        if signature:
            headers["x-twilio-signature"] = signature
        check(asyncio.run(hooks().handle(route, WebhookRequest("POST", url, headers, body))))


def test_huge_body_is_413() -> None:
    body = b"Body=" + b"x" * (2 * 1024 * 1024)
    response = asyncio.run(hooks().handle("sms", WebhookRequest(
        "POST", BASE + "sms", {"content-type": "application/x-www-form-urlencoded",
                               "x-twilio-signature": "x"}, body)))
    assert response.status == 413


def test_json_body_signed_with_body_sha256() -> None:
    body = '{"CallSid": "CA' + "1" * 32 + '", "Digits": "1"}'
    # A JSON body is not read as fields: the voice route's CallSid comes in the query here.
    url = (BASE + "voice?CallSid=CA" + "1" * 32 + "&bodySHA256="
           + hashlib.sha256(body.encode()).hexdigest())
    headers = {"content-type": "application/json", "x-twilio-signature": sign(url)}
    ok = asyncio.run(hooks().handle("voice", WebhookRequest("POST", url, headers,
                                                            body.encode())))
    assert ok.status == 200
    tampered = asyncio.run(hooks().handle("voice", WebhookRequest(
        "POST", url, headers, body.replace('"1"', '"2"').encode())))
    assert tampered.status == 403


def test_twilio_retry_with_same_idempotency_token_logs_once(caplog: Any) -> None:
    hook = hooks()
    form = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}
    url = BASE + "status"
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-twilio-signature": sign(url, form),
               "i-twilio-idempotency-token": "tok-123"}
    request = WebhookRequest("POST", url, headers, urlencode(form).encode())
    for _ in range(3):
        assert asyncio.run(hook.handle("status", request)).status == 204
    lines = [r for r in caplog.records if r.name == "shared.webhooks"
             and r.levelno >= logging.INFO]
    assert [r.getMessage() for r in lines] == [
        "status callback sid=SM" + "9" * 32 + " status=delivered error_code=-"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host=st.text(alphabet=st.characters(blacklist_characters="/?#"), min_size=1,
                    max_size=30),
       signature=st.text(max_size=40), settings_header=st.none() | st.text(max_size=40),
       base_url=st.booleans())
def test_any_host_or_signature_header_is_403_never_503(host: str, signature: str,
                                                       settings_header: str | None,
                                                       base_url: bool) -> None:
    """The worker's URL comes from the Host header: whatever it and the signature headers
    hold, a request Twilio did not sign is forged (403), never a 503 with a traceback."""
    creds = CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN))
    hook = Webhooks(app_settings(WEBHOOK_BASE_URL="https://func-x.azurewebsites.net")
                    if base_url else app_settings(), creds, MemoryLedger(), MemoryQueues())
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-twilio-signature": signature}
    if settings_header is not None:
        headers["x-twilio-webhooks-signature-settings"] = settings_header
    response = asyncio.run(hook.handle("sms", WebhookRequest(
        "POST", f"http://{host}/api/sms", headers, b"Body=hi")))
    assert response.status == 403, response
