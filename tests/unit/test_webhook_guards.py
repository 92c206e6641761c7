"""Webhook edges from the security review and the fault runs: each answer is a 4xx, a 503
in time, or the right TwiML; never a traceback, never a repeated side effect."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from shared import events, jobs
from shared.credentials import CredentialCache, CredentialsError, TwilioCredentials
from shared.storage import MAX_MESSAGE_BYTES, queue_bytes
from shared.twimlets import Result
from shared.webhooks import WebhookRequest, Webhooks
from tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MemoryLedger,
    MemoryQueues,
    settings,
    sign,
)

BASE = "https://func-x.azurewebsites.net/api/"
SMS = {"MessageSid": "SM" + "5" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551234567",
       "To": "+15005550006", "Body": "hello"}


class Source:
    """A credential source whose reads can fail, counted."""

    description = "test"

    def __init__(self) -> None:
        self.fetches = 0
        self.error: Exception | None = None

    def fetch(self) -> TwilioCredentials:
        self.fetches += 1
        if self.error:
            raise self.error
        return TwilioCredentials(ACCOUNT_SID, AUTH_TOKEN)


def hooks(queues: Any = None, ledger: Any = None, source: Any = None,
          **overrides: str) -> Webhooks:
    return Webhooks(settings(WEBHOOK_BASE_URL="https://func-x.azurewebsites.net", **overrides),
                    CredentialCache(source or Source(), min_refresh_seconds=10),
                    ledger or MemoryLedger(), queues or MemoryQueues())


def post(route: str, form: dict[str, str], *, query: str = "", token: str = AUTH_TOKEN,
         headers: dict[str, str] | None = None) -> WebhookRequest:
    url = BASE + route + (f"?{query}" if query else "")
    return WebhookRequest("POST", url, {"content-type": "application/x-www-form-urlencoded",
                                        "x-twilio-signature": sign(url, form, token),
                                        **(headers or {})}, urlencode(form).encode())


def handle(hook: Webhooks, route: str, request: WebhookRequest) -> Any:
    return asyncio.run(hook.handle(route, request))


# -- issue 12: a time budget, and the status route ------------------------------------------

class HangingQueues(MemoryQueues):
    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        await asyncio.sleep(3600)  # storage that never answers
        raise AssertionError


def test_a_side_effect_that_cannot_be_written_in_time_is_a_fast_503(caplog: Any) -> None:
    hook = hooks(queues=HangingQueues(), WEBHOOK_BUDGET_SECONDS="1")
    started = time.monotonic()
    res = handle(hook, "sms", post("sms", SMS))
    assert res.status == 503
    assert time.monotonic() - started < 2.0
    assert "no answer within 1 s (WEBHOOK_BUDGET_SECONDS); answered 503" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("job", ["a/b", "a#b", "a\x01b", "-leading-dash", "x" * 129, ""])
def test_status_route_refuses_what_is_not_a_job_id(job: str) -> None:
    hook = hooks()
    form = {"MessageSid": "SM" + "6" * 32, "MessageStatus": "delivered"}
    res = handle(hook, "status", post("status", form, query="job=" + quote(job, safe="")))
    assert (res.status, res.body) == (400, "Query parameter 'job' is not a job id (see the "
                                           "job schema's 'id').\n")


def test_status_for_an_unknown_job_is_published_and_blocks_nothing() -> None:
    ledger, queues = MemoryLedger(), MemoryQueues()
    hook = hooks(queues=queues, ledger=ledger)
    form = {"MessageSid": "SM" + "6" * 32, "MessageStatus": "delivered"}
    assert handle(hook, "status", post("status", form, query="job=never-sent")).status == 204
    assert ledger.rows == {}
    assert len(queues.texts("twilio-status")) == 1
    assert asyncio.run(ledger.claim("never-sent", "m1")).state == "claimed"


def test_status_callback_is_refused_without_a_sid_or_with_a_forged_status() -> None:
    hook = hooks()
    assert handle(hook, "status", post("status", {"MessageStatus": "sent"})).body == (
        "A status callback needs MessageSid or CallSid.\n")
    res = handle(hook, "status", post("status", {"MessageSid": "SM" + "6" * 32,
                                                 "MessageStatus": "deliveredSmsSidSM1"}))
    assert res.status == 400


# -- issue 15 -------------------------------------------------------------------------------

def test_body_sha256_is_a_query_parameter_not_a_substring(caplog: Any) -> None:
    """`?xbodySHA256=1` on a JSON request used to make the validator raise (a 503)."""
    body = '{"CallSid": "CA' + "1" * 32 + '"}'
    for query in ("xbodySHA256=1", "a=bodySHA256=1", "bodySHA256x=1"):
        url = f"{BASE}voice?{query}"
        res = handle(hooks(), "voice", WebhookRequest("POST", url, {
            "content-type": "application/json", "x-twilio-signature": sign(url)},
            body.encode()))
        assert (res.status, res.body) == (403, "Invalid X-Twilio-Signature.\n")
    assert "Traceback" not in caplog.text
    # A JSON body is not read as fields: the voice route's CallSid comes in the query here.
    good = (f"{BASE}voice?CallSid=CA{'1' * 32}"
            f"&bodySHA256={hashlib.sha256(body.encode()).hexdigest()}")
    res = handle(hooks(), "voice", WebhookRequest("POST", good, {
        "content-type": "application/json", "x-twilio-signature": sign(good)}, body.encode()))
    assert res.status == 200


def test_an_unknown_signature_algorithm_is_refused_without_echoing_it(caplog: Any) -> None:
    evil = "algorithm=HMAC_EVIL\nforged log line"
    res = handle(hooks(), "sms", post("sms", SMS, headers={
        "x-twilio-webhooks-signature-settings": evil}))
    assert (res.status, res.body) == (403, "Unsupported signature algorithm.\n")
    assert "HMAC_EVIL" not in caplog.text
    sha256 = post("sms", SMS, headers={
        "x-twilio-webhooks-signature-settings": "algorithm=HMAC_SHA256"})
    assert handle(hooks(), "sms", sha256).status == 403  # signed with SHA1: no match


def test_forged_requests_while_the_vault_fails_cost_one_read_per_ten_seconds(
        caplog: Any) -> None:
    source = Source()
    hook = hooks(source=source)

    async def go() -> list[int]:
        assert (await hook.handle("sms", post("sms", SMS))).status == 200
        source.error = CredentialsError("Key Vault is unreachable", transient=True)
        hook.credentials._attempted_at -= 60  # the last read was a minute ago
        return [(await hook.handle("sms", post("sms", SMS, token="f" * 32))).status
                for _ in range(20)]

    assert asyncio.run(go()) == [403] * 20
    assert source.fetches == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "answered 403" in warnings[0].getMessage()


@pytest.mark.parametrize("field, value", [
    ("MessageSid", "SM123"), ("MessageSid", "SM" + "5" * 32 + "NumMedia0"),
    ("AccountSid", "AC" + "G" * 32), ("CallSid", "SM" + "1" * 32), ("RecordingSid", "x")])
def test_sid_fields_must_look_like_sids(field: str, value: str) -> None:
    res = handle(hooks(), "sms", post("sms", {**SMS, field: value}))
    assert (res.status, res.body) == (400, f"{field} is not a Twilio SID.\n")


def test_a_captured_request_replayed_with_a_fresh_token_has_no_second_effect() -> None:
    """I-Twilio-Idempotency-Token is not signed: a replay can carry any. Side effects are
    keyed on the MessageSid (shape-checked) instead."""
    queues = MemoryQueues()
    hook = hooks(queues=queues)
    for token in ("t-1", "t-2", "t-3", None):
        headers = {"i-twilio-idempotency-token": token} if token else {}
        assert handle(hook, "sms", post("sms", SMS, headers=headers)).status == 200
    assert len(queues.texts("twilio-inbound")) == 1


def test_effect_keys_are_hashed_and_do_not_collide() -> None:
    ledger, queues = MemoryLedger(), MemoryQueues()
    hook = hooks(queues=queues, ledger=ledger)
    url = "twiml/voicemail?Notify=%2B15559990000&Transcribe=false&Recorded=true"
    for recording in ("RE" + "1" * 32, "RE" + "2" * 32):
        form = {"From": "+15551234567", "RecordingUrl": "https://api.twilio.com/r/RE1",
                "RecordingSid": recording, "AccountSid": ACCOUNT_SID}
        for token in ("tok/1", "tok?1"):  # keyed on the RecordingSid: tokens change nothing
            request = WebhookRequest(
                "POST", BASE + url, {"content-type": "application/x-www-form-urlencoded",
                                     "x-twilio-signature": sign(BASE + url, form),
                                     "i-twilio-idempotency-token": token},
                urlencode(form).encode())
            assert handle(hook, "twiml/voicemail", request).status == 200
    assert len(ledger.effects) == 2 and len(queues.texts("twilio-outbound")) == 2
    assert all(len(k) == 64 and set(k) <= set("0123456789abcdef") for k in ledger.effects)


def test_events_from_oversized_signed_requests_fit_a_queue_message() -> None:
    queues = MemoryQueues()
    hook = hooks(queues=queues)
    # Within the body cap, text that grows on a queue: JSON escapes control characters
    # (\x01: 6 bytes), the queue escapes XML (<: 4 bytes).
    big = {**SMS, "Body": "<" * 6_000, "ProfileName": "\x01" * 6_000, "NumMedia": "2",
           "MediaUrl0": "https://m.example/" + "\x02" * 6_000, "MediaUrl1": "https://m/1"}
    assert handle(hook, "sms", post("sms", big)).status == 200
    [text] = queues.texts("twilio-inbound")
    assert queue_bytes(text) <= MAX_MESSAGE_BYTES
    event = json.loads(text)
    assert event["message_sid"] == SMS["MessageSid"] and event["media"][1]["url"] == "https://m/1"
    assert set(event["truncated"]) >= {"body", "profile_name", "media.0.url"}


def test_a_small_event_is_left_whole() -> None:
    event = {"event_id": "x", "body": "hi"}
    assert events.fit(event) == json.dumps(event)


# -- signature edges that used to raise (a 503 and a traceback) ------------------------------

@pytest.mark.parametrize("signature", ["é", "RSOYDt4T1cUTdK1PDd93/VVr8B8\u00e9", "\u2028", "✓" * 28])
def test_a_non_ascii_signature_is_forged_not_a_503(signature: str, caplog: Any) -> None:
    """hmac.compare_digest(str, str) raised TypeError on non-ASCII text."""
    url = BASE + "sms"
    res = handle(hooks(), "sms", WebhookRequest("POST", url, {
        "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        urlencode(SMS).encode()))
    assert (res.status, res.body) == (403, "Invalid X-Twilio-Signature.\n")
    assert "Traceback" not in caplog.text


# What the worker sees as its URL comes from the Host header. Without WEBHOOK_BASE_URL that
# URL is what is signed, and twilio's validator read its port and raised ValueError.
BAD_HOSTS = ["func-x:abc", "func-x:99999", "func-x:-1", "[::1", "[::1]:x",
             "func-x:80:80", "func-x:\u0661\u0662", "func-x\udcff"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_header_with_a_bad_port_is_forged_not_a_503(host: str, caplog: Any) -> None:
    url = f"http://{host}/api/sms"
    hook = Webhooks(settings(), CredentialCache(Source(), min_refresh_seconds=10),
                    MemoryLedger(), MemoryQueues())  # no WEBHOOK_BASE_URL
    try:
        signature = sign(url, SMS)
    except UnicodeEncodeError:  # a lone surrogate: nobody can sign that URL
        signature = "x"
    res = handle(hook, "sms", WebhookRequest("POST", url, {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature}, urlencode(SMS).encode()))
    assert (res.status, res.body) == (403, "Invalid X-Twilio-Signature.\n")
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_behind_webhook_base_url_a_bad_host_header_does_not_matter(host: str) -> None:
    """The public origin is signed, not what the worker saw: a valid signature passes (an
    unparseable URL, which has no path to take, is refused)."""
    res = handle(hooks(), "sms", WebhookRequest("POST", f"http://{host}/api/sms", {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": sign(BASE + "sms", SMS)}, urlencode(SMS).encode()))
    assert res.status == (403 if host.startswith("[::1") and "]" not in host else 200)


# -- twimlet notifications: checked as the queue trigger checks a job, before they are queued --

def test_a_twimlet_job_the_queue_would_refuse_is_a_400_and_nothing_is_queued() -> None:
    queues = MemoryQueues()
    hook = hooks(queues=queues)
    notify = {"id": "voicemail-RE1", "type": "sms", "to": "+15559990000", "body": "x" * 1601}
    hook.routes["twiml/voicemail"] = hook._twimlet(  # a twimlet with a bug, injected
        "voicemail", lambda p, links: Result("<Response/>", [notify]))
    res = handle(hook, "twiml/voicemail", post("twiml/voicemail", {"CallSid": "CA" + "1" * 32}))
    assert (res.status, res.body) == (
        400, "voicemail: its notification SMS cannot be sent: field 'body': must be at most "
             "1600 characters.\n")
    assert queues.messages == {}


def test_every_notification_a_twimlet_queues_passes_the_job_schema() -> None:
    queues = MemoryQueues()
    hook = hooks(queues=queues)
    form = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT_SID,
            "From": "client:" + "é" * 3_000, "To": "+15005550006",
            "Caller": "sip:" + "x" * 10_000, "RecordingSid": "RE" + "1" * 32,
            "RecordingUrl": "https://api.twilio.com/r/RE" + "1" * 32,
            "TranscriptionStatus": "completed", "TranscriptionText": "t\u2028\t" * 1_500}
    for route, query in [
            ("twiml/voicemail", "Notify=%2B15559990000&Transcribed=true"),
            ("twiml/conference", "Moderators%5B%5D=%2B15559990000&EnableSmsNotifications=1")]:
        assert handle(hook, route, post(route, form, query=query)).status == 200
    texts = queues.texts("twilio-outbound")
    assert len(texts) == 2
    for text in texts:
        jobs.from_dict(json.loads(text))


# -- re-split replay: Twilio signs the sorted names and values run together -------------------

# An incoming SMS as Twilio posts it (its fields, in full).
INBOUND = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": "SM" + "7" * 32,
           "NumMedia": "0", "ToCity": "SAN FRANCISCO", "FromZip": "94105",
           "SmsSid": "SM" + "7" * 32, "FromState": "CA", "SmsStatus": "received",
           "FromCity": "SAN FRANCISCO", "Body": "hello", "FromCountry": "US",
           "To": "+15005550006", "ToZip": "94105", "NumSegments": "1",
           "MessageSid": "SM" + "7" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551234567",
           "ApiVersion": "2010-04-01"}


def resplit(form: dict[str, str], into: str, through: str) -> dict[str, str]:
    """`form` with the fields after `into`, up to `through`, run into its value: the text
    Twilio signs is the same, so the signature still holds."""
    names = sorted(form)
    absorbed = names[names.index(into) + 1:names.index(through) + 1]
    out = {k: v for k, v in form.items() if k not in absorbed}
    out[into] = form[into] + "".join(name + form[name] for name in absorbed)
    return out


def test_a_resplit_sms_without_its_sid_is_refused_however_often_it_is_replayed() -> None:
    forged = resplit(resplit(INBOUND, "From", "MessageSid"), "NumMedia", "SmsStatus")
    assert not {"MessageSid", "SmsSid", "SmsMessageSid"} & set(forged)
    url = BASE + "sms"
    assert sign(url, forged) == sign(url, INBOUND)  # the captured signature fits it
    queues = MemoryQueues()
    hook = hooks(queues=queues)
    assert handle(hook, "sms", post("sms", INBOUND)).status == 200
    answers = [handle(hook, "sms", post("sms", forged, headers={
        "i-twilio-idempotency-token": f"fresh-{i}"})) for i in range(3)]
    assert {(r.status, r.body) for r in answers} == {
        (400, "An incoming message needs MessageSid (or SmsSid).\n")}
    assert [json.loads(t)["event_id"] for t in queues.texts("twilio-inbound")] == [
        INBOUND["MessageSid"]]


@pytest.mark.parametrize("name, value", [
    ("From", INBOUND["From"] + "FromCitySAN FRANCISCO"), ("From", ""), ("From", None),
    ("To", INBOUND["To"] + "ToCity"), ("To", None), ("From", "whatsapp:15551234567"),
    ("From", "+0555"), ("To", "12"), ("From", "HSBCFromCityLONDON"), ("From", "1234567890123")])
def test_sms_from_and_to_must_be_messaging_addresses(name: str, value: str | None) -> None:
    form = {k: v for k, v in {**INBOUND, name: value}.items() if v is not None}
    res = handle(hooks(), "sms", post("sms", form))
    assert (res.status, res.body) == (400, f"{name} is not a messaging address (E.164, a "
                                           "short code, a sender ID, or a channel's, like "
                                           "whatsapp:+15551234567).\n")


@pytest.mark.parametrize("sender, recipient", [
    ("+15551234567", "+15005550006"), ("whatsapp:+15551234567", "whatsapp:+15005550006"),
    ("+15551234567", "12345"), ("rcs:+15551234567", "rcs:acme_agent"),
    ("messenger:1234567890", "messenger:9876543210"), ("HSBC", "+15005550006"),
    ("Google", "+15005550006"), ("My Shop 24", "+15005550006")])
def test_sms_takes_every_address_form_twilio_sends(sender: str, recipient: str) -> None:
    res = handle(hooks(), "sms", post("sms", {**INBOUND, "From": sender, "To": recipient}))
    assert res.status == 200


@pytest.mark.parametrize("route, form, reason", [
    ("sms", {"From": "+15551234567", "To": "+15005550006", "Body": "hi"},
     "An incoming message needs MessageSid (or SmsSid)."),
    ("voice", {"From": "+15551234567", "To": "+15005550006"},
     "An incoming call needs CallSid."),
    ("status", {"MessageStatus": "delivered", "To": "+15551234567"},
     "A status callback needs MessageSid or CallSid."),
])
def test_every_route_with_an_effect_or_a_caller_needs_twilios_sid(
        route: str, form: dict[str, str], reason: str) -> None:
    queues = MemoryQueues()
    res = handle(hooks(queues=queues), route, post(route, form, headers={
        "i-twilio-idempotency-token": "t-1"}))
    assert (res.status, res.body) == (400, reason + "\n")
    assert queues.messages == {}


def test_a_resplit_status_callback_cannot_drop_its_sid() -> None:
    status = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": "+15005550006",
              "MessageSid": "SM" + "6" * 32, "MessageStatus": "delivered",
              "SmsSid": "SM" + "6" * 32, "SmsStatus": "delivered", "To": "+15551234567"}
    forged = resplit(status, "From", "SmsStatus")
    assert sign(BASE + "status", forged) == sign(BASE + "status", status)
    res = handle(hooks(), "status", post("status", forged))
    assert (res.status, res.body) == (400, "A status callback needs MessageSid or CallSid.\n")


# -- issue 19: every list a twimlet reads is capped; one request's side effects are bounded --

MANY = [f"+1555000{i:04d}" for i in range(200)]


@pytest.mark.parametrize("route, query, reason", [
    # One signed call queued 200 SMS (Moderators[] had no cap), written one after another.
    ("twiml/conference", [*(("Moderators[]", n) for n in MANY), ("EnableSmsNotifications", "1")],
     "Moderators: at most 10 numbers (Twilio dials at most 10 in one <Dial>); got 200."),
    ("twiml/forward", [("PhoneNumber", MANY[0]), *(("AllowedCallers[]", n) for n in MANY[:11])],
     "AllowedCallers: at most 10 numbers (Twilio dials at most 10 in one <Dial>); got 11."),
    ("twiml/message", [("Message[]", f"part {i}") for i in range(21)],
     "Message: at most 20 values; got 21."),
    ("twiml/holdmusic", [("Music[]", f"https://example.com/{i}.mp3") for i in range(21)],
     "Music: at most 20 values; got 21."),
    ("twiml/menu", [(f"Options[{i}]", f"https://example.com/{i}") for i in range(21)],
     "Options: at most 20 menu options; got 21."),
    ("twiml/menu", [("Options[]", f"https://example.com/{i}") for i in range(21)],
     "Options: at most 20 menu options; got 21."),
])
def test_every_twimlet_list_is_capped_with_a_400_naming_it(
        route: str, query: list[tuple[str, str]], reason: str) -> None:
    queues = MemoryQueues()
    form = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551112222",
            "To": "+15005550006"}
    res = handle(hooks(queues=queues), route, post(route, form, query=urlencode(query)))
    assert (res.status, res.body) == (400, reason + "\n")
    assert queues.messages == {}


class InFlight(MemoryQueues):
    """Counts the queue writes under way at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0)  # a write takes a round trip: the others may start meanwhile
        self.now -= 1
        return await super().put(queue_name, text, delay_seconds=delay_seconds)


def test_a_calls_notifications_are_written_at_once() -> None:
    queues = InFlight()
    query = [*(("Moderators[]", n) for n in MANY[:10]), ("EnableSmsNotifications", "1")]
    form = {"CallSid": "CA" + "1" * 32, "From": "+15551112222", "To": "+15005550006"}
    res = handle(hooks(queues=queues), "twiml/conference",
                 post("twiml/conference", form, query=urlencode(query)))
    assert res.status == 200
    assert sorted(json.loads(t)["to"] for t in queues.texts("twilio-outbound")) == MANY[:10]
    assert queues.most == 10


# -- issue 19, point 7: the body cap fits Twilio's largest webhook; forgeries cost little ---

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
# The largest webhook Twilio sends: an incoming WhatsApp message (its messaging webhook
# reference) with the longest Body (1600 characters, each 4 bytes of UTF-8), 10 media of the
# longest common content type, a first message from an ad (Referral*) and every other field
# it names, those Twilio does not bound given generous lengths.
LARGEST = {
    **INBOUND, "From": "whatsapp:+15551234567", "To": "whatsapp:+15005550006",
    "Body": "😀" * 1600, "NumSegments": "11", "NumMedia": "10",
    "MessagingServiceSid": "MG" + "1" * 32, "ProfileName": "😀" * 25, "WaId": "15551234567",
    "MessageType": "image", "ButtonText": "é" * 20, "ButtonPayload": "é" * 256,
    "Latitude": "-33.8712345", "Longitude": "151.2012345", "Address": "é" * 256,
    "Label": "é" * 256, "Forwarded": "true", "FrequentlyForwarded": "true",
    "OriginalRepliedMessageSid": "MM" + "1" * 32, "OriginalRepliedMessageSender": "15005550006",
    "ReferralBody": "😀" * 1024, "ReferralHeadline": "😀" * 60, "ReferralSourceId": "1" * 20,
    "ReferralSourceType": "ad", "ReferralSourceUrl": "https://fb.me/" + "a" * 200,
    "ReferralMediaId": "1" * 20, "ReferralMediaContentType": MEDIA_TYPE,
    "ReferralMediaUrl": "https://scontent.whatsapp.net/v/" + "a" * 500,
    "ReferralNumMedia": "1", "ReferralCtwaClid": "a" * 200,
    "ChannelMetadata": json.dumps({"type": "whatsapp", "data": {"context": {
        "ProfileName": "😀" * 25, "WaId": "15551234567"}}}),
    **{f"MediaUrl{i}": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/"
                      f"MM{'1' * 32}/Media/ME{i:032x}" for i in range(10)},
    **{f"MediaContentType{i}": MEDIA_TYPE for i in range(10)},
}


def test_twilios_largest_webhook_fits_the_body_cap_and_is_answered() -> None:
    from shared.webhooks import MAX_BODY_BYTES

    request = post("sms", LARGEST)
    assert 40_000 < len(request.body) < MAX_BODY_BYTES  # 42.7 KB: documented
    queues = MemoryQueues()
    assert handle(hooks(queues=queues), "sms", request).status == 200
    [event] = [json.loads(t) for t in queues.texts("twilio-inbound")]
    assert (event["body"], len(event["media"])) == ("😀" * 1600, 10)


def test_a_signed_body_over_the_cap_is_a_413() -> None:
    form = {**SMS, "Body": "x" * (64 * 1024)}
    res = handle(hooks(), "sms", post("sms", form))
    assert (res.status, res.body) == (413, "Request body over 65536 bytes: larger than any "
                                           "webhook Twilio sends.\n")


NOT_UTF8 = b"Body=" + b"\xff" * (64 * 1024 - 5)  # at the cap, and undecodable


@pytest.mark.parametrize("signature, reason", [
    (None, "Missing X-Twilio-Signature header."),
    ("", "Missing X-Twilio-Signature header."),
    ("forged", "Invalid X-Twilio-Signature."),
    ("A" * 28, "Invalid X-Twilio-Signature."),  # SHA1's length, not base64's padding
    ("A" * 43 + "=", "Invalid X-Twilio-Signature."),  # SHA256's shape, SHA1 named
])
def test_unsigned_or_misshapen_requests_are_refused_before_the_body_is_read(
        signature: str | None, reason: str) -> None:
    source = Source()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    res = handle(hooks(source=source), "sms", WebhookRequest("POST", BASE + "sms", headers,
                                                             NOT_UTF8))
    assert (res.status, res.body) == (403, reason + "\n")
    assert source.fetches == 0  # not even the credentials were read


def test_a_forged_body_of_bad_escapes_is_refused_by_one_scan() -> None:
    """`%2%2...` cost parse_qsl 7 ms per 64 KiB (each `%` decoded in Python)."""
    body = b"Body=" + b"%2" * (32 * 1024 - 3)
    res = handle(hooks(), "sms", WebhookRequest("POST", BASE + "sms", {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": "A" * 27 + "="}, body))
    assert (res.status, res.body) == (400, "Malformed form body: a % not followed by two hex "
                                           "digits.\n")


def test_a_twimlet_url_a_person_wrote_with_a_bare_percent_still_plays() -> None:
    """`Message=Save 50%` worked on twimlets.com (PHP reads a bare % as itself); a form
    body Twilio encoded never has one, and is still refused for it."""
    call = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551234567"}
    res = handle(hooks(), "twiml/message", post("twiml/message", call,
                                                query="Message=Save+50%+today"))
    assert (res.status, res.body) == (200, '<?xml version="1.0" encoding="UTF-8"?><Response>'
                                           "<Say>Save 50% today</Say></Response>")
