"""Every twimlet stage as a whole TwiML document, and scripted walks of the multi-stage
ones: the test plays Twilio, following action URLs with the parameters Twilio would send
and signing each request."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import pytest

from shared.credentials import CredentialCache, EnvironmentSource
from shared.webhooks import WebhookRequest, WebhookResponse, Webhooks
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, MemoryLedger, MemoryQueues, form_body, sign
from tests.helpers import settings as app_settings

ORIGIN = "https://func-x.azurewebsites.net"
CALLER = "+15551112222"
CALL = {"CallSid": "CA" + "5" * 32, "AccountSid": ACCOUNT_SID, "From": CALLER,
        "To": "+15005550006", "CallStatus": "in-progress"}


def X(body: str) -> str:  # noqa: N802 - reads like the document it builds
    return '<?xml version="1.0" encoding="UTF-8"?><Response>' + body + "</Response>"


class Twilio:
    """Plays Twilio against the app's webhooks: signs, posts, follows."""

    def __init__(self, **settings: str) -> None:
        self.queues = MemoryQueues()
        self.ledger = MemoryLedger()
        self.hooks = Webhooks(app_settings(WEBHOOK_BASE_URL=ORIGIN, **settings),
                              CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                              self.ledger, self.queues)

    def post(self, url: str, extra: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> WebhookResponse:
        form = {**CALL, **(extra or {})}
        path = urlsplit(url).path
        route = path.split("/api/", 1)[1]
        request = WebhookRequest("POST", url, {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": sign(url, form), **(headers or {})}, form_body(form))
        return asyncio.run(self.hooks.handle(route, request))

    def get(self, url: str) -> WebhookResponse:
        route = urlsplit(url).path.split("/api/", 1)[1]
        return asyncio.run(self.hooks.handle(route, WebhookRequest(
            "GET", url, {"x-twilio-signature": sign(url)})))


def url(name: str, params: list[tuple[str, str]], code: bool = True) -> str:
    query = params + ([("code", "k1")] if code else [])
    return f"{ORIGIN}/api/twiml/{name}?{urlencode(query)}"


def action(doc: str, tag: str, attr: str = "action") -> str:
    node = ElementTree.fromstring(doc).find(f".//{tag}")
    assert node is not None, doc
    return node.get(attr) if attr else node.text  # type: ignore[return-value]


# -- echo, message, holdmusic ---------------------------------------------------------------

def test_echo_returns_well_formed_twiml_and_refuses_the_rest() -> None:
    twilio = Twilio()
    doc = "<Response><Say>Hi</Say></Response>"
    res = twilio.get(url("echo", [("Twiml", doc)]))
    assert (res.status, res.body) == (200, doc)
    assert twilio.get(url("echo", [("Twiml", "<Response>")])).status == 400
    bad = twilio.get(url("echo", [("Twiml", "<Say>x</Say>")]))
    assert (bad.status, bad.body) == (
        400, "Twiml: the root element must be <Response>, not <Say>.\n")


def test_message() -> None:
    res = Twilio().get(url("message", [("Message", "Hi"), ("Voice", "alice")]))
    assert res.body == X('<Say voice="alice">Hi</Say>')


def test_holdmusic_plays_then_loops() -> None:
    u = url("holdmusic", [("Message", "Please hold"), ("Music[0]", "https://m.example/1.mp3"),
                          ("Music[1]", "https://m.example/2.mp3")])
    res = Twilio().post(u)
    loop = url("holdmusic", [("Music[0]", "https://m.example/1.mp3"),
                             ("Music[1]", "https://m.example/2.mp3")])
    assert res.body == X("<Say>Please hold</Say><Play>https://m.example/1.mp3</Play>"
                         "<Play>https://m.example/2.mp3</Play>"
                         f'<Redirect method="POST">{loop.replace("&", "&amp;")}</Redirect>')
    assert Twilio().post(url("holdmusic", [("Message", "x")])).status == 400


# -- forward ---------------------------------------------------------------------------------

def test_forward_walk_answered_and_failed() -> None:
    twilio = Twilio()
    first = url("forward", [("PhoneNumber", "+15553334444"), ("Timeout", "15"),
                            ("FailUrl", "https://fail.example/twiml")])
    res = twilio.post(first)
    next_url = url("forward", [("PhoneNumber", "+15553334444"), ("Timeout", "15"),
                               ("FailUrl", "https://fail.example/twiml"), ("Dial", "true")])
    assert res.body == X(f'<Dial action="{next_url.replace("&", "&amp;")}" callerId="{CALLER}" '
                         'timeout="15"><Number>+15553334444</Number></Dial>')
    assert action(res.body, "Dial") == next_url  # absolute, signed origin, code= kept
    answered = twilio.post(next_url, {"DialCallStatus": "completed"})
    assert answered.body == X("<Hangup />")
    failed = twilio.post(next_url, {"DialCallStatus": "no-answer"})
    assert failed.body == X("<Redirect>https://fail.example/twiml</Redirect>")


def test_forward_allowed_callers_and_missing_number() -> None:
    twilio = Twilio()
    res = twilio.post(url("forward", [("PhoneNumber", "+15553334444"),
                                      ("AllowedCallers[]", "+15550000000")]))
    assert res.body == X("<Reject />")
    allowed = twilio.post(url("forward", [("PhoneNumber", "+15553334444"),
                                          ("AllowedCallers[]", CALLER)]))
    assert "<Number>+15553334444</Number>" in allowed.body
    missing = twilio.post(url("forward", []))
    assert (missing.status, missing.body) == (
        400, "PhoneNumber is required: the number to forward the call to.\n")


# -- voicemail -------------------------------------------------------------------------------

def test_voicemail_walk_notifies_once_by_sms_job() -> None:
    twilio = Twilio()
    first = url("voicemail", [("Message", "Leave a message"), ("Notify", "+15559990000")])
    res = twilio.post(first)
    recorded = url("voicemail", [("Message", "Leave a message"), ("Notify", "+15559990000"),
                                 ("Stage", "recorded")])
    assert res.body == X(f'<Say>Leave a message</Say><Record action="'
                         f'{recorded.replace("&", "&amp;")}" maxLength="120" />'
                         "<Say>I did not receive a recording. Goodbye.</Say>")
    rec = {"RecordingUrl": "https://api.twilio.com/rec/RE1", "RecordingSid": "RE" + "1" * 32}
    headers = {"i-twilio-idempotency-token": "idem-1"}
    done = twilio.post(action(res.body, "Record"), rec, headers)
    assert done.body == X("<Say>Thank you. Goodbye.</Say><Hangup />")
    twilio.post(action(res.body, "Record"), rec, headers)  # Twilio's retry
    [job] = [json.loads(t) for t in twilio.queues.texts("twilio-outbound")]
    assert job == {"id": "voicemail-RE" + "1" * 32, "type": "sms", "to": "+15559990000",
                   "body": f"New voicemail from {CALLER}: https://api.twilio.com/rec/RE1"}


def test_voicemail_with_transcription_notifies_with_the_text() -> None:
    twilio = Twilio()
    res = twilio.post(url("voicemail", [("Notify", "+15559990000"), ("Transcribe", "true")],
                          code=False))
    record = ElementTree.fromstring(res.body).find("Record")
    assert record is not None and record.get("transcribe") == "true"
    rec = {"RecordingUrl": "https://api.twilio.com/rec/RE2", "RecordingSid": "RE" + "2" * 32}
    assert twilio.post(record.get("action"), rec).body == X(  # type: ignore[arg-type]
        "<Say>Thank you. Goodbye.</Say><Hangup />")
    assert twilio.queues.texts("twilio-outbound") == []  # waits for the transcription
    transcribed = twilio.post(record.get("transcribeCallback"),  # type: ignore[arg-type]
                              {**rec, "TranscriptionText": "Call me back"})
    assert transcribed.body == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    [job] = [json.loads(t) for t in twilio.queues.texts("twilio-outbound")]
    assert job["body"] == (f"New voicemail from {CALLER}: https://api.twilio.com/rec/RE2\n"
                           "Call me back")


# -- menu ------------------------------------------------------------------------------------

def test_menu_walk_valid_invalid_and_timeout() -> None:
    twilio = Twilio()
    first = url("menu", [("Message", "Press 1 or 22"), ("Options[1]", "https://a.example/1"),
                         ("Options[22]", "https://a.example/22")])
    res = twilio.post(first)
    here = first.replace("&", "&amp;")
    assert res.body == X(f'<Gather action="{here}" numDigits="2" timeout="10">'
                         f"<Say>Press 1 or 22</Say></Gather><Redirect>{here}</Redirect>")
    assert twilio.post(first, {"Digits": "22"}).body == X(
        "<Redirect>https://a.example/22</Redirect>")
    wrong = twilio.post(first, {"Digits": "9"})
    assert wrong.body == X("<Say>I'm sorry, that wasn't a valid option.</Say>"
                           f'<Gather action="{here}" numDigits="2" timeout="10">'
                           f"<Say>Press 1 or 22</Say></Gather><Redirect>{here}</Redirect>")
    assert twilio.post(url("menu", [("Message", "x")])).status == 400


# -- simulring and findme ------------------------------------------------------------------

def test_simulring_walk_with_whisper() -> None:
    twilio = Twilio()
    base = [("PhoneNumbers[0]", "+15550000001"), ("PhoneNumbers[1]", "+15550000002"),
            ("Message", "Call for you"), ("Timeout", "12")]
    res = twilio.post(url("simulring", base))
    whisper = url("simulring", base + [("Whisper", "true")]).replace("&", "&amp;")
    dial = url("simulring", base + [("Dial", "true")]).replace("&", "&amp;")
    assert res.body == X(f'<Dial action="{dial}" timeout="12">'
                         f'<Number url="{whisper}">+15550000001</Number>'
                         f'<Number url="{whisper}">+15550000002</Number></Dial>')
    callee = twilio.post(url("simulring", base + [("Whisper", "true")]))
    accept = url("simulring", base + [("Whisper", "true"), ("Accepted", "true")])
    assert callee.body == X(f'<Gather action="{accept.replace("&", "&amp;")}" numDigits="1" '
                            'timeout="5"><Say>Call for you</Say></Gather><Hangup />')
    assert twilio.post(accept, {"Digits": "1"}).body == (
        '<?xml version="1.0" encoding="UTF-8"?><Response />')  # empty: the call connects
    assert twilio.post(url("simulring", base + [("Dial", "true")]),
                       {"DialCallStatus": "no-answer"}).body == X("<Hangup />")


def test_findme_tries_numbers_in_order_then_fail_url() -> None:
    twilio = Twilio()
    base = [("PhoneNumbers[0]", "+15550000001"), ("PhoneNumbers[1]", "+15550000002"),
            ("FailUrl", "https://fail.example/vm")]
    res = twilio.post(url("findme", base))
    assert action(res.body, "Number", "") == "+15550000001"
    step = action(res.body, "Dial")
    assert step == url("findme", base + [("Dial", "true"), ("Index", "0")])
    second = twilio.post(step, {"DialCallStatus": "no-answer"})
    assert action(second.body, "Number", "") == "+15550000002"
    whisper = action(second.body, "Number", "url")
    assert whisper == url("findme", base + [("Whisper", "true")])
    last = twilio.post(action(second.body, "Dial"), {"DialCallStatus": "busy"})
    assert last.body == X("<Redirect>https://fail.example/vm</Redirect>")
    answered = twilio.post(step, {"DialCallStatus": "completed"})
    assert answered.body == X("<Hangup />")


# -- conference ------------------------------------------------------------------------------

def test_conference_password_and_moderators() -> None:
    twilio = Twilio()
    base = [("Name", "Standup"), ("Password", "4321"), ("Moderators[]", CALLER),
            ("Music", "https://m.example/wait.xml"), ("Message", "Welcome")]
    res = twilio.post(url("conference", base))
    here = url("conference", base).replace("&", "&amp;")
    assert res.body == X(f'<Gather action="{here}" numDigits="4" timeout="10"><Say>Please '
                         "enter the conference password, then press pound.</Say></Gather>"
                         f"<Redirect>{here}</Redirect>")
    wrong = twilio.post(url("conference", base), {"Digits": "1111"})
    assert wrong.body == X("<Say>Sorry, that password is incorrect.</Say>"
                           f'<Gather action="{here}" numDigits="4" timeout="10"><Say>Please '
                           "enter the conference password, then press pound.</Say></Gather>"
                           f"<Redirect>{here}</Redirect>")
    joined = twilio.post(url("conference", base), {"Digits": "4321"})
    assert joined.body == X('<Say>Welcome</Say><Dial><Conference endConferenceOnExit="true" '
                            'startConferenceOnEnter="true" waitUrl="https://m.example/wait.xml">'
                            "Standup</Conference></Dial>")
    guest = twilio.post(url("conference", [("Name", "Standup"), ("Moderators[]", "+1999")]))
    assert guest.body == X('<Dial><Conference endConferenceOnExit="false" '
                           'startConferenceOnEnter="false">Standup</Conference></Dial>')


@pytest.mark.parametrize("name", ["message", "forward", "menu", "conference"])
def test_voice_and_language_everywhere_text_is_spoken(name: str) -> None:
    params = {"message": [("Message", "Hi")],
              "forward": [("PhoneNumber", "+15550000001"), ("AllowedCallers[]", CALLER)],
              "menu": [("Message", "Hi"), ("Options[1]", "https://a.example/1")],
              "conference": [("Message", "Hi")]}[name]
    res = Twilio().post(url(name, params + [("Voice", "Polly.Amy"), ("Language", "en-GB")]))
    says = ElementTree.fromstring(res.body).findall(".//Say")
    assert all(s.get("voice") == "Polly.Amy" and s.get("language") == "en-GB" for s in says)


def test_unknown_twimlet_is_404() -> None:
    assert Twilio().post(url("nope", [])).status == 404
