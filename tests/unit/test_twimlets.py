"""Twimlet drop-ins, part 1: the harness (the test plays Twilio: signs, posts, follows
action URLs with the fields Twilio would send), echo, message, holdmusic, and where
settings may come from.

Known answers: each expected document is the whole TwiML. The labels ([SIMPLE-MESSAGE-1]
...) are the cases twilio-labs/function-templates recorded against twimlets.com; where our
answer differs on purpose, the original's answer is written beside it ("original:").
Part 2 (forward, voicemail, menu) and part 3 (whisper, simulring, findme, conference) are
test_twimlets_calls.py and test_twimlets_dialing.py.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import pytest

from shared import twimlets
from shared.credentials import CredentialCache, EnvironmentSource
from shared.webhooks import WebhookRequest, WebhookResponse, Webhooks
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, MemoryLedger, MemoryQueues, form_body, sign
from tests.helpers import settings as app_settings

ORIGIN = "https://func-x.azurewebsites.net"
CALLER = "+15551112222"
LINE = "+15005550006"
CALL_SID = "CA" + "5" * 32
CALL = {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "From": CALLER, "To": LINE,
        "CallStatus": "in-progress", "ApiVersion": "2010-04-01"}
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def X(body: str) -> str:  # noqa: N802 - reads like the document it builds
    return '<?xml version="1.0" encoding="UTF-8"?><Response>' + body + "</Response>"


def amp(url: str) -> str:
    """A URL as it appears inside a TwiML document."""
    return url.replace("&", "&amp;")


class Twilio:
    """Plays Twilio against the app's webhooks: signs, posts, follows."""

    def __init__(self, **settings: str) -> None:
        self.queues = MemoryQueues()
        self.ledger = MemoryLedger()
        self.hooks = Webhooks(app_settings(WEBHOOK_BASE_URL=ORIGIN, **settings),
                              CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                              self.ledger, self.queues)

    def post(self, url: str, extra: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, *,
             call: dict[str, str] | None = None) -> WebhookResponse:
        form = {**(CALL if call is None else call), **(extra or {})}
        route = urlsplit(url).path.split("/api/", 1)[1]
        request = WebhookRequest("POST", url, {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": sign(url, form), **(headers or {})}, form_body(form))
        return asyncio.run(self.hooks.handle(route, request))

    def get(self, url: str) -> WebhookResponse:
        route = urlsplit(url).path.split("/api/", 1)[1]
        return asyncio.run(self.hooks.handle(route, WebhookRequest(
            "GET", url, {"x-twilio-signature": sign(url)})))

    def jobs(self) -> list[dict[str, object]]:
        import json

        return [json.loads(t) for t in self.queues.texts("twilio-outbound")]


def url(name: str, params: list[tuple[str, str]], code: bool = True) -> str:
    query = params + ([("code", "k1")] if code else [])
    return f"{ORIGIN}/api/twiml/{name}" + (f"?{urlencode(query)}" if query else "")


def action(doc: str, tag: str, attr: str = "action") -> str:
    node = ElementTree.fromstring(doc).find(f".//{tag}")
    assert node is not None, doc
    return node.get(attr) if attr else node.text  # type: ignore[return-value]


def ok(res: WebhookResponse) -> str:
    assert res.status == 200, res
    return res.body


def bad(res: WebhookResponse) -> str:
    assert res.status == 400, res
    return res.body.strip()


# -- echo -------------------------------------------------------------------------------------

def test_echo_returns_the_document_as_given() -> None:  # [Echo-1]
    doc = "<Response><Say>echo okay</Say></Response>"
    assert ok(Twilio().get(url("echo", [("Twiml", doc)]))) == doc


@pytest.mark.parametrize("twiml_text, error", [
    # original: echoed anything, even nothing; Twilio then failed the call (12100).
    ("", "Twiml is required: a TwiML document to return."),
    ("<Response>", "Twiml: not well-formed XML (no element found: line 1, column 10)."),
    ("<Say>x</Say>", "Twiml: the root element must be <Response>, not <Say>."),
    ('<!DOCTYPE Response [<!ENTITY a "aaaaaaaaaa">]><Response><Say>&a;</Say></Response>',
     "Twiml: a DOCTYPE is not allowed in TwiML."),
    ('<!DOCTYPE Response SYSTEM "file:///etc/passwd"><Response/>',
     "Twiml: a DOCTYPE is not allowed in TwiML."),
    ("<Response><Say>&a;</Say></Response>",
     "Twiml: not well-formed XML (undefined entity: line 1, column 15)."),
])
def test_echo_refuses_what_is_not_a_plain_twiml_document(twiml_text: str, error: str) -> None:
    assert bad(Twilio().get(url("echo", [("Twiml", twiml_text)]))) == error


# -- message ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params, expected", [
    ([], EMPTY),  # [SIMPLE-MESSAGE-0]
    ([("Message", "https://example.com/recorded-message.mp3")],  # [SIMPLE-MESSAGE-1]
     X("<Play>https://example.com/recorded-message.mp3</Play>")),
    ([("Message", "Single message")], X("<Say>Single message</Say>")),  # [SIMPLE-MESSAGE-2]
    ([("Message[0]", "Message one"), ("Message[1]", "https://example.com/message-two.mp3"),
      ("Message[2]", "Message three")],  # [SIMPLE-MESSAGE-3]
     X("<Say>Message one</Say><Play>https://example.com/message-two.mp3</Play>"
       "<Say>Message three</Say>")),
    ([("Message[]", "HTTPS://EXAMPLE.COM/A.MP3"), ("Message[]", "  "), ("Message[]", "Bye")],
     X("<Play>HTTPS://EXAMPLE.COM/A.MP3</Play><Say>Bye</Say>")),  # any case, as the original
    ([("Message", "Hi"), ("Voice", "Polly.Amy"), ("Language", "en-GB")],
     # original: no Voice or Language (spoken in Twilio's default voice).
     X('<Say language="en-GB" voice="Polly.Amy">Hi</Say>')),
])
def test_message(params: list[tuple[str, str]], expected: str) -> None:
    assert ok(Twilio().post(url("message", params))) == expected


# -- holdmusic --------------------------------------------------------------------------------

def test_holdmusic_plays_each_track_with_the_message_between_then_loops() -> None:
    # [HOLD-MUSIC-5], with the tracks given as URLs (the original listed an S3 bucket and
    # shuffled it; ours plays the URLs in the order given).
    params = [("Message", "Please hold the line"), ("Music[0]", "https://m.example/1.mp3"),
              ("Music[1]", "HTTP://m.example/2.mp3")]
    here = url("holdmusic", params)
    assert ok(Twilio().post(here)) == X(
        "<Play>https://m.example/1.mp3</Play><Say>Please hold the line</Say>"
        "<Play>HTTP://m.example/2.mp3</Play><Say>Please hold the line</Say>"
        f"<Redirect>{amp(here)}</Redirect>")  # original: <Redirect/> (this URL)


def test_holdmusic_without_message_and_with_a_recorded_one() -> None:
    plain = url("holdmusic", [("Music", "https://m.example/1.mp3")])  # [HOLD-MUSIC-4]
    assert ok(Twilio().post(plain)) == X(
        f"<Play>https://m.example/1.mp3</Play><Redirect>{amp(plain)}</Redirect>")
    recorded = url("holdmusic", [("Music", "https://m.example/1.mp3"),
                                 ("Message", "https://m.example/hold.mp3")])
    assert ok(Twilio().post(recorded)) == X(
        "<Play>https://m.example/1.mp3</Play><Play>https://m.example/hold.mp3</Play>"
        f"<Redirect>{amp(recorded)}</Redirect>")


def test_holdmusic_bucket_goes_to_twilios_own_hold_music() -> None:
    res = Twilio().post(url("holdmusic", [("Bucket", "com.twilio.music.guitars"),
                                          ("Message", "Please hold")]))
    # original: listed the bucket itself and played it ([HOLD-MUSIC-4]/[HOLD-MUSIC-5]).
    assert ok(res) == X('<Redirect method="GET">https://twimlets.com/holdmusic?Bucket='
                        "com.twilio.music.guitars&amp;Message=Please+hold</Redirect>")


@pytest.mark.parametrize("params, error", [
    # [HOLD-MUSIC-1] original: <Say>An S 3 bucket is required.</Say>
    ([], "Music (or Music[0], Music[1] ...) is required: URLs to play; or Bucket, an S3 "
         "bucket of Twilio's hold music."),
    ([("Music[0]", "https://m.example/1.mp3"), ("Music[1]", "jazz")],
     "Music[1] must be a URL of an audio file; got 'jazz'."),
    ([("Bucket", "../etc")], "Bucket must be an S3 bucket name, e.g. com.twilio.music.rock."),
])
def test_holdmusic_errors_name_the_parameter(params: list[tuple[str, str]], error: str) -> None:
    assert bad(Twilio().post(url("holdmusic", params))) == error


# -- where settings come from (issue 15, point 1) ---------------------------------------------

# A caller's Voice SDK may add any parameter to the form of a TwiML App's request, signed
# with our token. None of these may change what a twimlet does.
INJECTED = {"PhoneNumber": "+19990000001", "PhoneNumbers[5]": "+19990000002",
            "PhoneNumbers[]": "+19990000003", "PhoneNumbers": "+19990000004",
            "Options[99]": "https://evil.example/9", "Options[1]": "https://evil.example/1",
            "Moderators[]": CALLER, "Moderators[3]": CALLER, "AllowedCallers[]": CALLER,
            "AllowedCallers[7]": CALLER, "Message[0]": "Injected",
            "FailUrl": "https://evil.example/fail", "Notify": "+19990000005",
            "Twiml": "<Response><Dial>+19990000006</Dial></Response>",
            "CallerId": "+19990000007", "Message": "Injected", "Password": "1",
            "Name": "other-room", "Music": "https://evil.example/m.mp3", "Timeout": "1",
            "Transcribe": "false", "EnableSmsNotifications": "true", "Dial": "true",
            "HumanCheck": "1", "PasswordTries": "0", "Bucket": "evil",
            "Recorded": "true", "Transcribed": "true"}

SETUPS = {
    "echo": [("Twiml", "<Response><Say>Hi</Say></Response>")],
    "message": [("Message", "Hello")],
    "forward": [("PhoneNumber", "+15553334444"), ("AllowedCallers[]", "+15550000000")],
    "voicemail": [("Notify", "+15559990000"), ("Transcribe", "true")],
    "menu": [("Message", "Press 2"), ("Options[2]", "https://a.example/2")],
    "whisper": [("Message", "Call for you")],
    "simulring": [("PhoneNumbers[0]", "+15550000001")],
    "findme": [("PhoneNumbers[0]", "+15550000001")],
    "conference": [("Name", "Standup"), ("Moderators[]", "+15550000009")],
    "holdmusic": [("Music", "https://m.example/1.mp3")],
}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_form_fields_that_are_not_twilios_change_nothing(name: str) -> None:
    assert sorted(SETUPS) == sorted(twimlets.TWIMLETS)
    twilio = Twilio()
    expected = twilio.post(url(name, SETUPS[name]))
    injected = twilio.post(url(name, SETUPS[name]), INJECTED)
    assert (injected.status, injected.body) == (expected.status, expected.body)
    assert ok(expected)
    # Stage answers too: the recording callback queues an SMS only to the URL's Notify.
    rec = {"RecordingUrl": "https://api.twilio.com/r/RE1", "RecordingSid": "RE" + "1" * 32,
           "TranscriptionStatus": "completed", "TranscriptionText": "hi"}
    twilio.post(url("voicemail", SETUPS["voicemail"] + [("Transcribed", "true")]),
                {**rec, **INJECTED})
    assert [job["to"] for job in twilio.jobs()] == ["+15559990000"]


def test_a_forged_moderator_seat_or_allowed_caller_from_the_form_is_refused() -> None:
    twilio = Twilio()
    res = twilio.post(url("forward", SETUPS["forward"]), INJECTED)
    assert ok(res) == X("<Say>Sorry, you are calling from a restricted number. Good bye.</Say>")
    joined = twilio.post(url("conference", [("Name", "Standup"),
                                            ("Moderators[]", "+15550000009")]), INJECTED)
    assert 'startConferenceOnEnter="false"' in ok(joined)


def test_twilios_fields_from_the_form_win_and_next_stages_do_not_carry_them() -> None:
    # A GET request carries Twilio's fields in the query; a later POST brings fresh ones.
    twilio = Twilio()
    first = url("menu", [("Options[1]", "https://a.example/1"), ("Digits", "7"),
                         ("From", CALLER), ("CallSid", CALL_SID)])
    res = twilio.get(first)
    here = url("menu", [("Options[1]", "https://a.example/1")])
    assert ok(res) == X("<Say>I'm sorry, that wasn't a valid option.</Say>"
                        f'<Gather action="{amp(here)}" numDigits="1" />'
                        f"<Redirect>{amp(here)}</Redirect>")
    assert ok(twilio.post(first, {"Digits": "1"})) == X(
        "<Redirect>https://a.example/1</Redirect>")


# The fields each twimlet reads. Every name read with p.get/p.has is a setting (from the
# query) or one of Twilio's runtime fields (from the form): a new name must be put in one.
SETTINGS = {"AllowedCallers", "Bucket", "CallerId", "Dial", "Email", "EnableSmsNotifications",
            "ErrorMessage", "FailUrl", "HumanCheck", "Language", "Message", "Moderators",
            "Music", "Name", "Notify", "Options", "Password", "PasswordTries", "PhoneNumber",
            "PhoneNumbers", "Timeout", "Transcribe", "Twiml", "Voice"}
RUNTIME_READ = {"AccountSid", "CallSid", "Called", "Caller", "DialCallStatus", "DialStatus", "Digits",
                "From", "RecordingSid", "RecordingUrl", "To", "TranscriptionStatus",
                "TranscriptionText"}


def test_every_field_read_is_a_setting_or_one_of_twilios() -> None:
    source = Path(twimlets.__file__).read_text(encoding="utf-8")
    names = set(re.findall(r"""\.(?:get|has|phones?|items|indexed|options|small_number)"""
                           r"""\("([A-Z]\w*)\"""", source))
    for group in re.findall(r"for k in \(([^)]*)\)", source):  # (k, v) loops over names
        names |= set(re.findall(r'"(\w+)"', group))
    assert names == SETTINGS | RUNTIME_READ
    assert RUNTIME_READ <= twimlets.RUNTIME_FIELDS
    assert not SETTINGS & twimlets.RUNTIME_FIELDS


def test_unknown_twimlet_is_404() -> None:
    assert Twilio().post(url("nope", [])).status == 404
