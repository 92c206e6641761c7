"""Twimlet drop-ins, part 2: forward, voicemail and menu, stage by stage, as whole
documents. Labels ([FORWARD-1-1] ...) name the twimlets.com cases recorded in
twilio-labs/function-templates; "original:" gives the original's answer where ours differs
on purpose (see the deliberate differences in docs/twimlets.md)."""

from __future__ import annotations

import pytest

from shared import jobs
from tests.helpers import ACCOUNT_SID
from tests.unit import test_twimlets
from tests.unit.test_twimlets import CALLER, EMPTY, LINE, Twilio, X, action, amp, bad, ok, url

FAIL = "https://example.com/please-try-later"

# -- forward ----------------------------------------------------------------------------------


def dial_forward(params: list[tuple[str, str]], attrs: str = 'timeout="20"',
                 number: str = "415-555-1212") -> str:
    back = url("forward", params + [("Dial", "true")])
    return X(f'<Dial action="{amp(back)}" {attrs}>{number}</Dial>')


@pytest.mark.parametrize("params, attrs", [
    # [FORWARD-1-1] original: <Dial action="/forward?Dial=true" timeout="20">415-555-1212</Dial>
    ([("PhoneNumber", "415-555-1212")], 'timeout="20"'),
    # [FORWARD-1-2] original: action="/forward?Dial=true&amp;FailUrl=https%3A..."
    ([("PhoneNumber", "415-555-1212"), ("FailUrl", FAIL)], 'timeout="20"'),
    # [FORWARD-1-7]
    ([("PhoneNumber", "415-555-1212"), ("Timeout", "42"), ("CallerId", "510-555-1212")],
     'callerId="510-555-1212" timeout="42"'),
    # Timeout=0 or empty: the default, as the original's PHP truthiness gave.
    ([("PhoneNumber", "415-555-1212"), ("Timeout", "0")], 'timeout="20"'),
    ([("PhoneNumber", "415-555-1212"), ("Timeout", "")], 'timeout="20"'),
])
def test_forward_dials(params: list[tuple[str, str]], attrs: str) -> None:
    assert ok(Twilio().post(url("forward", params))) == dial_forward(params, attrs)


@pytest.mark.parametrize("allowed, caller, called", [
    ("+1 (555) 111-2222", CALLER, LINE),  # [FORWARD-1-3]: digits only
    # National forms need a valid area code and exchange (CALLER's 111 is not one).
    ("555-222-3333", "+15552223333", LINE),  # (original: matched only in API 2008-08-01)
    ("15552223333", "+15552223333", LINE),
    ("+15005550006", CALLER, LINE),  # [FORWARD-1-6]: the number called is on the list
    ("+1 555 111 2222", "15551112222", LINE),
    ("1-555-222-3333", "5552223333", "5005550006"),  # [FORWARD-1-5]: API 2008-08-01 numbers
])
def test_forward_allowed_callers_match_by_digits(allowed: str, caller: str,
                                                 called: str) -> None:
    params = [("PhoneNumber", "415-555-1212"), ("AllowedCallers[]", "+15550000000"),
              ("AllowedCallers[]", allowed)]
    res = Twilio().post(url("forward", params), {"From": caller, "To": called})
    assert ok(res) == dial_forward(params)


def test_forward_reads_the_2008_api_caller_and_called_fields() -> None:
    params = [("PhoneNumber", "415-555-1212"), ("AllowedCallers[]", CALLER)]
    old_api = {"CallSid": "CA" + "1" * 32, "Caller": CALLER, "Called": LINE, "ApiVersion": "2008-08-01"}
    res = Twilio().post(url("forward", params), call=old_api)
    assert ok(res) == dial_forward(params)


@pytest.mark.parametrize("form", [
    {"From": "+15550000001"},  # [FORWARD-1-4]
    {"From": "+44 555 111 2222"},  # the same national digits, another country
    # A Voice SDK client chooses To itself (original: allowed it when To was on the list).
    {"From": "client:alice", "To": "+15005550006"},
])
def test_forward_restricted_caller_hears_the_originals_message(form: dict[str, str]) -> None:
    params = [("PhoneNumber", "415-555-1212"), ("AllowedCallers[0]", "+15005550006"),
              ("AllowedCallers[1]", "+15551112222")]
    res = Twilio().post(url("forward", params), {**form, "To": form.get("To", "+15009990000")})
    assert ok(res) == X("<Say>Sorry, you are calling from a restricted number. Good bye.</Say>")


# Issue 19, point 2: a Voice SDK client or a SIP caller chooses its own identity, digits
# and all; only a phone number matches an allowed caller (or a moderator).
NOT_PHONES = ["client:14155550122", "sip:+14155550122@attacker.sip.twilio.com",
              "sip:4155550122x@example.com"]


@pytest.mark.parametrize("caller", NOT_PHONES)
def test_forward_sdk_and_sip_callers_never_match_allowed_callers(caller: str) -> None:
    params = [("PhoneNumber", "415-555-1212"), ("AllowedCallers[]", "+14155550122")]
    for form in ({"From": caller}, {"From": caller, "To": "+14155550122"},
                 {"From": "", "Caller": caller}):
        res = Twilio().post(url("forward", params), {"To": LINE, **form})
        assert ok(res) == X("<Say>Sorry, you are calling from a restricted number. Good "
                            "bye.</Say>")
    assert ok(Twilio().post(url("forward", params), {"From": "+14155550122"})) == (
        dial_forward(params))


def test_forward_plain_allowed_callers_is_not_a_list_as_on_twimlets() -> None:
    params = [("PhoneNumber", "415-555-1212"), ("AllowedCallers", "+15550000000")]
    assert ok(Twilio().post(url("forward", params))) == dial_forward(params)


@pytest.mark.parametrize("form, expected", [
    ({"DialCallStatus": "completed"}, "<Hangup />"),  # [FORWARD-2-1]
    ({"DialStatus": "answered"}, "<Hangup />"),  # [FORWARD-2-2] (API 2008-08-01)
    ({"DialCallStatus": "no-answer"}, f"<Redirect>{FAIL}</Redirect>"),  # [FORWARD-2-4]
    ({"DialCallStatus": "busy"}, f"<Redirect>{FAIL}</Redirect>"),
    ({"DialCallStatus": "failed"}, f"<Redirect>{FAIL}</Redirect>"),
])
def test_forward_back_from_the_dial(form: dict[str, str], expected: str) -> None:
    # original for [FORWARD-2-4]: HTTP 302, Location: the FailUrl
    params = [("PhoneNumber", "415-555-1212"), ("FailUrl", FAIL), ("Dial", "true")]
    res = Twilio().post(url("forward", params), form)
    assert ok(res) == X(expected)


def test_forward_back_from_the_dial_without_fail_url_hangs_up() -> None:  # [FORWARD-2-3]
    res = Twilio().post(url("forward", [("PhoneNumber", "1"), ("Dial", "true")]),
                        {"DialCallStatus": "no-answer"})
    assert ok(res) == X("<Hangup />")


def test_forward_dial_flag_without_a_status_dials_again_as_the_original() -> None:
    params = [("PhoneNumber", "415-555-1212"), ("Dial", "true")]
    res = Twilio().post(url("forward", params))
    back = url("forward", params)
    assert ok(res) == X(f'<Dial action="{amp(back)}" timeout="20">415-555-1212</Dial>')


def test_forward_walk_keeps_origin_and_code() -> None:
    twilio = Twilio()
    first = url("forward", [("PhoneNumber", "+15553334444"), ("FailUrl", FAIL)])
    back = action(ok(twilio.post(first)), "Dial")
    assert back == url("forward", [("PhoneNumber", "+15553334444"), ("FailUrl", FAIL),
                                   ("Dial", "true")])
    assert ok(twilio.post(back, {"DialCallStatus": "no-answer"})) == X(
        f"<Redirect>{FAIL}</Redirect>")


@pytest.mark.parametrize("params, error", [
    ([], "PhoneNumber is required: the number to forward the call to."),
    ([("PhoneNumber", "sip:alice@example.com")],
     "PhoneNumber must be a phone number: E.164 like +14155550122, or a US/Canada number like "
     "(415) 555-0122; got 'sip:alice@example.com'."),
    ([("PhoneNumber", "+15553334444"), ("AllowedCallers[]", "abc")],
     "AllowedCallers[] must be a phone number: E.164 like +14155550122, or a US/Canada "
     "number like (415) 555-0122; got 'abc'."),
    ([("PhoneNumber", "+15553334444"), ("Timeout", "\u00b2")],
     "Timeout must be a whole number of seconds."),
])
def test_forward_errors_name_the_parameter(params: list[tuple[str, str]], error: str) -> None:
    assert bad(Twilio().post(url("forward", params))) == error


# -- voicemail --------------------------------------------------------------------------------

NOTIFY = "+15559990000"
RECORDING_SID = "RE" + "1" * 32
# Twilio's RecordingUrl, and the link the SMS carries (built from the SIDs, as Twilio does).
LINK = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}"
REC = {"RecordingUrl": LINK, "RecordingSid": RECORDING_SID}
# The stages' URLs: the app writes each marker into its <Record> URLs (the signed query).
RECORDED = [("Recorded", "true")]
TRANSCRIBED = [("Transcribed", "true")]


@pytest.mark.parametrize("params, prompt", [
    ([], "<Say>Please leave a message after the beep.</Say>"),  # [VOICEMAIL-1-1]
    ([("Message", "Custom message")], "<Say>Custom message</Say>"),  # [VOICEMAIL-1-2]
    ([("Message", "https://example.com/recorded-message.mp3")],  # [VOICEMAIL-1-3]
     "<Play>https://example.com/recorded-message.mp3</Play>"),
    ([("Message", " ")], "<Say>Please leave a message after the beep.</Say>"),
])
def test_voicemail_prompt_without_transcription(params: list[tuple[str, str]],
                                                prompt: str) -> None:
    here = url("voicemail", [("Notify", NOTIFY)] + params + [("Transcribe", "false")])
    rec = url("voicemail", [("Notify", NOTIFY)] + params + [("Transcribe", "false")] + RECORDED)
    # original: <Record/> (Twilio posts the recording back to this URL by default)
    assert ok(Twilio().post(here)) == X(f'{prompt}<Record action="{amp(rec)}" />')


def test_voicemail_transcribes_unless_told_not_to() -> None:  # [VOICEMAIL-1-4]
    here = url("voicemail", [("Notify", NOTIFY)])
    rec = url("voicemail", [("Notify", NOTIFY)] + RECORDED)
    tr = url("voicemail", [("Notify", NOTIFY)] + TRANSCRIBED)
    # original: <Record transcribe="true" transcribeCallback="http://twimlets.com/voicemail?
    # Email=you@example.com"/>
    assert ok(Twilio().post(here)) == X(
        "<Say>Please leave a message after the beep.</Say>"
        f'<Record action="{amp(rec)}" transcribe="true" transcribeCallback="{amp(tr)}" />')
    also = url("voicemail", [("Notify", NOTIFY), ("Transcribe", "TRUE")])
    assert 'transcribe="true"' in ok(Twilio().post(also))


def test_voicemail_with_only_an_email_records_and_says_why_nobody_is_told(
        caplog: pytest.LogCaptureFixture) -> None:
    here = url("voicemail", [("Email", "you@example.com"), ("Transcribe", "false")])
    rec = url("voicemail", [("Email", "you@example.com"), ("Transcribe", "false")] + RECORDED)
    twilio = Twilio()
    with caplog.at_level("WARNING", logger="shared.twimlets"):
        assert ok(twilio.post(here)) == X(
            "<Say>Please leave a message after the beep.</Say>"
            f'<Record action="{amp(rec)}" />')
    assert [r.getMessage() for r in caplog.records if r.name == "shared.twimlets"] == [
        "voicemail: Email is not supported here (no mail service); add Notify=<phone number> "
        "to the URL for an SMS per message"]
    assert "you@example.com" not in caplog.text  # no caller or owner data in the logs
    assert twilio.jobs() == []


def test_voicemail_recording_without_transcription_notifies_once() -> None:
    # [VOICEMAIL-2-1]; the original e-mailed "You have a new voicemail from (555) 111-2222 ...
    # Click this link to listen to the message: <RecordingUrl>.mp3"
    twilio = Twilio()
    here = url("voicemail", [("Notify", NOTIFY), ("Transcribe", "false")] + RECORDED)
    headers = {"i-twilio-idempotency-token": "idem-1"}
    assert ok(twilio.post(here, REC, headers)) == X("<Say>Thanks. Good bye.</Say><Hangup />")
    twilio.post(here, REC, headers)  # Twilio's retry
    # A replay with a fresh (unsigned) token is the same recording: nothing queued again.
    twilio.post(here, REC, {"i-twilio-idempotency-token": "idem-2"})
    assert twilio.jobs() == [{"id": "voicemail-RE" + "1" * 32, "type": "sms", "to": NOTIFY,
                              "body": "New voicemail from (555) 111-2222: "
                                      f"{LINK}.mp3"}]


def test_voicemail_with_transcription_waits_for_the_text() -> None:
    twilio = Twilio()
    here = url("voicemail", [("Notify", "(555) 999-0000")] + RECORDED)
    assert ok(twilio.post(here, REC)) == X(  # [VOICEMAIL-2-2]
        "<Say>Thanks. Good bye.</Say><Hangup />")
    assert twilio.jobs() == []
    # [VOICEMAIL-3-1] original: an empty 200 and an e-mail with the text
    callback = url("voicemail", [("Notify", "(555) 999-0000")] + TRANSCRIBED)
    done = twilio.post(callback, {**REC, "TranscriptionStatus": "completed",
                              "TranscriptionText": "Call me back."})
    assert ok(done) == EMPTY
    assert twilio.jobs() == [{"id": "voicemail-RE" + "1" * 32, "type": "sms", "to": NOTIFY,
                              "body": "New voicemail from (555) 111-2222: "
                                      f"{LINK}.mp3\nCall me back."}]


def test_voicemail_failed_transcription_notifies_without_text() -> None:  # [VOICEMAIL-3-2]
    twilio = Twilio()
    res = twilio.post(url("voicemail", [("Notify", NOTIFY)] + TRANSCRIBED),
                      {**REC, "TranscriptionStatus": "failed", "From": "+447700900123"})
    assert ok(res) == EMPTY
    assert [job["body"] for job in twilio.jobs()] == [
        f"New voicemail from +447700900123: {LINK}.mp3"]


def test_voicemail_without_notify_records_and_notifies_nobody() -> None:
    twilio = Twilio()
    assert ok(twilio.post(url("voicemail", [("Transcribe", "false")] + RECORDED), REC)) == X(
        "<Say>Thanks. Good bye.</Say><Hangup />")
    assert twilio.jobs() == []


# Issue 19, point 3: RecordingUrl was checked with urlsplit, which reads `\\` differently
# from a browser: the first one here passed, and a phone opened evil.example. A TwiML App's
# client can send any RecordingUrl; the link is built from the SIDs instead.
EVIL_RECORDINGS = [
    f"https://evil.example\\@api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"
    f"{RECORDING_SID}",
    f"https://api.twilio.com@evil.example/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"
    f"{RECORDING_SID}",
    f"https://evil.example%5C@api.twilio.com/{RECORDING_SID}",
    f"https:\\\\evil.example\\api.twilio.com/{RECORDING_SID}",
    f"https://api.twilio.com\t.evil.example/{RECORDING_SID}",
    "https://evil.example/RE1", "http://api.twilio.com/r/RE1",
    "https://api.twilio.com.evil.example/RE1", "https://[api.twilio.com/r/RE1",
    "https://api.twilio.com/r/" + "R" * 50_000, "javascript:alert(1)//api.twilio.com"]


@pytest.mark.parametrize("recording", EVIL_RECORDINGS)
def test_voicemail_links_the_recording_as_twilio_builds_it(recording: str) -> None:
    twilio = Twilio()
    res = twilio.post(url("voicemail", [("Notify", NOTIFY), ("Transcribe", "false")] + RECORDED),
                      {**REC, "RecordingUrl": recording})
    assert ok(res) == X("<Say>Thanks. Good bye.</Say><Hangup />")
    assert twilio.jobs() == [{"id": f"voicemail-{RECORDING_SID}", "type": "sms",
                              "to": NOTIFY, "body": "New voicemail from (555) 111-2222: "
                                                    f"{LINK}.mp3"}]


@pytest.mark.parametrize("form, error", [
    ({"RecordingSid": None}, "RecordingSid must be the recording's SID (RE and 32 hex "
                             "digits), as Twilio sends it with RecordingUrl."),
    ({"AccountSid": "AC" + "2" * 32}, "AccountSid must be this app's Twilio account, as "
                                      "Twilio sends it: the recording link is built from it."),
    ({"AccountSid": None}, "AccountSid must be this app's Twilio account, as Twilio sends "
                           "it: the recording link is built from it."),
])
def test_voicemail_link_needs_this_accounts_and_the_recordings_sid(
        form: dict[str, str | None], error: str) -> None:
    twilio = Twilio()
    fields = {k: v for k, v in {**test_twimlets.CALL, **REC, **form}.items() if v is not None}
    res = twilio.post(url("voicemail", [("Notify", NOTIFY), ("Transcribe", "false")] + RECORDED),
                      call=fields)
    assert bad(res) == error
    assert ACCOUNT_SID not in res.body and twilio.jobs() == []


@pytest.mark.parametrize("caller", ["client:" + "a" * 60_000, "client:Call +1-800-555-0199 now",
                                    "sip:alice@evil.example"])
def test_voicemail_sms_never_quotes_an_app_or_sip_callers_identity(caller: str) -> None:
    # A TwiML App's client names itself (100 KB of it made a job too large for the queue,
    # and its words would reach the owner's phone): it is told as what it is.
    twilio = Twilio()
    here = url("voicemail", [("Notify", NOTIFY), ("Transcribe", "false")] + RECORDED)
    assert ok(twilio.post(here, {**REC, "From": caller}))
    assert twilio.jobs() == [{"id": "voicemail-RE" + "1" * 32, "type": "sms", "to": NOTIFY,
                              "body": "New voicemail from an app or SIP caller: "
                                      f"{LINK}.mp3"}]
    jobs.from_dict(twilio.jobs()[0])  # what the queue trigger will check


@pytest.mark.parametrize("notify", [
    "abc", "+1555", "555-1234", "client:alice",
    # US/Canada national forms: the area code and the exchange start with 2-9 (NANP);
    # Twilio refuses the others (21211).
    "0000000000", "(000) 000-0000", "1234567890", "11234567890", "(415) 055-0122",
    "415-155-0122", "1 (015) 555-0122", "21234567890"])
def test_voicemail_notify_must_be_a_phone_number(notify: str) -> None:
    assert bad(Twilio().post(url("voicemail", [("Notify", notify)]))).startswith(
        "Notify must be a phone number: E.164 like +14155550122, or a US/Canada number like "
        f"(415) 555-0122; got {notify!r}.")


@pytest.mark.parametrize("notify, to", [
    ("(415) 555-0122", "+14155550122"), ("1-415-555-0122", "+14155550122"),
    ("4155550122", "+14155550122"), ("(212) 200-0000", "+12122000000"),
    ("+1 000 000 0000", "+10000000000"),  # E.164 is taken as written
    ("+44 20 7946 0958", "+442079460958")])
def test_voicemail_notify_takes_e164_and_nanp_numbers(notify: str, to: str) -> None:
    twilio = Twilio()
    assert ok(twilio.post(url("voicemail", [("Notify", notify), ("Transcribe", "false")]
                              + RECORDED), REC))
    assert [job["to"] for job in twilio.jobs()] == [to]


# -- menu -------------------------------------------------------------------------------------

def menu_doc(here: str, gather_body: str, digits: int = 1, before: str = "") -> str:
    # original: <Gather numDigits="n"> ... </Gather><Redirect/> (both to this URL)
    gather = (f'<Gather action="{amp(here)}" numDigits="{digits}">{gather_body}</Gather>'
              if gather_body else f'<Gather action="{amp(here)}" numDigits="{digits}" />')
    return X(f"{before}{gather}<Redirect>{amp(here)}</Redirect>")


@pytest.mark.parametrize("message, gather_body", [
    ("https://example.com/recorded-message.mp3",  # [SIMPLE-MENU-1-1]
     "<Play>https://example.com/recorded-message.mp3</Play>"),
    ("Text message", "<Say>Text message</Say>"),  # [SIMPLE-MENU-1-2]
    ("", ""),
])
def test_menu_asks(message: str, gather_body: str) -> None:
    here = url("menu", [("Message", message), ("Options[1]", "https://example.com/1")])
    assert ok(Twilio().post(here)) == menu_doc(here, gather_body)


def test_menu_waits_for_the_longest_option() -> None:  # [SIMPLE-MENU-1-3]
    here = url("menu", [("Message", "Text message"), ("Options[1]", "https://example.com/1"),
                        ("Options[12345]", "https://example.com/12345")])
    assert ok(Twilio().post(here)) == menu_doc(here, "<Say>Text message</Say>", digits=5)


def test_menu_option_pressed_goes_to_its_url() -> None:  # [SIMPLE-MENU-2-1]
    here = url("menu", [("Options[1]", "https://example.com/1"),
                        ("Options[12345]", "https://example.com/12345")])
    # original: HTTP 302, Location: https://example.com/12345
    assert ok(Twilio().post(here, {"Digits": "12345"})) == X(
        "<Redirect>https://example.com/12345</Redirect>")


def test_menu_wrong_digits_say_so_and_ask_again() -> None:  # [SIMPLE-MENU-2-2]
    here = url("menu", [("Options[1]", "https://example.com/1")])
    assert ok(Twilio().post(here, {"Digits": "9"})) == menu_doc(
        here, "", before="<Say>I'm sorry, that wasn't a valid option.</Say>")
    custom = url("menu", [("Options[1]", "https://example.com/1"), ("ErrorMessage", "Nope."),
                          ("Message", "Press 1")])
    assert ok(Twilio().post(custom, {"Digits": "9"})) == menu_doc(
        custom, "<Say>Press 1</Say>", before="<Say>Nope.</Say>")


@pytest.mark.parametrize("options, pressed", [
    ([("Options[]", "https://a.example/0")], "0"),  # original: a PHP list starts at 0
    ([("Options[1]", "https://a.example/1"), ("Options[]", "https://a.example/2")], "2"),
    ([("Options[]", "https://a.example/0"), ("Options[]", "https://a.example/1")], "1"),
])
def test_menu_options_without_a_number_take_the_next_one(options: list[tuple[str, str]],
                                                         pressed: str) -> None:
    here = url("menu", options)
    assert ok(Twilio().post(here, {"Digits": pressed})) == X(
        f"<Redirect>https://a.example/{pressed}</Redirect>")


def test_menu_walk_with_voice() -> None:
    twilio = Twilio()
    first = url("menu", [("Message", "Press 2"), ("Options[2]", "https://a.example/2"),
                         ("Voice", "Polly.Amy")])
    res = ok(twilio.post(first))
    assert res == menu_doc(first, '<Say voice="Polly.Amy">Press 2</Say>')
    assert ok(twilio.post(action(res, "Gather"), {"Digits": "2"})) == X(
        "<Redirect>https://a.example/2</Redirect>")


@pytest.mark.parametrize("params, error", [
    # original: a menu without options asked for ever
    ([("Message", "x")], "Options[<digits>]=<url> is required: at least one menu option."),
    ([("Options[abc]", "https://a.example")],
     "Options[abc]: a menu option is keyed by the digits a caller presses (0-9, * or #, up to "
     "10)."),
])
def test_menu_errors_name_the_parameter(params: list[tuple[str, str]], error: str) -> None:
    assert bad(Twilio().post(url("menu", params))) == error

