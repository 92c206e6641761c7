"""Twimlet drop-ins, part 3: whisper, simulring, findme and conference, stage by stage, as
whole documents. Labels ([FIND-ME-1-1] ...) name the twimlets.com cases recorded in
twilio-labs/function-templates; "original:" gives the original's answer where ours differs
on purpose (see the deliberate differences in docs/twimlets.md)."""

from __future__ import annotations

import hashlib

import pytest

from shared import jobs
from tests.unit.test_twimlets import (
    CALL_SID,
    CALLER,
    EMPTY,
    LINE,
    ORIGIN,
    Twilio,
    X,
    action,
    amp,
    bad,
    ok,
    url,
)
from tests.unit.test_twimlets_calls import NOT_PHONES

FAIL = "https://example.com/please-try-later.mp3"
THREE = ["415-555-1212", "415-555-1313", "415-555-1414"]


def whisper_url(*params: tuple[str, str]) -> str:
    return url("whisper", list(params))


# -- whisper ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params, prompt", [
    ([("Message", "https://example.com/recorded-message.mp3")],  # [WHISPER-2-1]
     "<Play>https://example.com/recorded-message.mp3</Play>"),
    ([("Message", "Text message")], "<Say>Text message</Say>"),  # [WHISPER-2-2]
    ([], "<Say>You are receiving a call from +. 1. 9. 1. 6. 5. 5. 5. 0. 1. 2. 3. .  "
         "Press any key to accept.</Say>"),  # [WHISPER-2-3]: the caller's number, spelled
])
def test_whisper_asks_the_person_called(params: list[tuple[str, str]], prompt: str) -> None:
    here = whisper_url(*params)
    res = Twilio().post(here, {"From": "+19165550123"})
    # original: <Gather numDigits="1"> (posting back to this URL by default)
    assert ok(res) == X(f'<Gather action="{amp(here)}" numDigits="1">{prompt}</Gather>')


def test_whisper_human_check_hangs_up_when_no_key_is_pressed() -> None:  # [WHISPER-2-4]
    here = whisper_url(("Message", "Text message"), ("HumanCheck", "1"))
    assert ok(Twilio().post(here)) == X(
        f'<Gather action="{amp(here)}" numDigits="1"><Say>Text message</Say></Gather>'
        "<Hangup />")


def test_whisper_key_pressed_connects() -> None:
    here = whisper_url(("HumanCheck", "1"))
    assert ok(Twilio().post(here, {"Digits": "5"})) == EMPTY  # [WHISPER-4-1]
    assert ok(Twilio().post(here, {"Digits": ""})) == X("<Hangup />")  # [WHISPER-4-2]


# -- simulring --------------------------------------------------------------------------------

def simulring_doc(params: list[tuple[str, str]], numbers: list[str], timeout: int,
                  whisper: str) -> str:
    back = url("simulring", params + [("Dial", "true")])
    rings = "".join(f'<Number url="{amp(whisper)}">{n}</Number>' for n in numbers)
    return X(f'<Dial action="{amp(back)}" timeout="{timeout}">{rings}</Dial>')


def test_simulring_rings_every_number_with_a_whisper_that_connects() -> None:
    # [SIMULRING-1-1] original: <Dial action="/simulring?Dial=true&amp;FailUrl=" timeout="20">
    # <Number url="whisper?Message=">415-555-1212</Number> ... (numbers sorted)
    params = [("PhoneNumbers[]", n) for n in THREE]
    res = ok(Twilio().post(url("simulring", params)))
    assert res == simulring_doc(params, THREE, 20, whisper_url())
    # No HumanCheck: the call connects after the whisper, key or not, as the original.
    whisper = ok(Twilio().post(action(res, "Number", "url")))
    assert "<Hangup" not in whisper


def test_simulring_with_fail_url_timeout_and_message() -> None:
    # [SIMULRING-1-2], [SIMULRING-1-3]
    params = [("PhoneNumbers[0]", THREE[0]), ("PhoneNumbers[1]", THREE[1]),
              ("PhoneNumbers[2]", THREE[2]), ("FailUrl", FAIL), ("Timeout", "42"),
              ("Message", "Custom message"), ("Voice", "Polly.Amy")]
    res = Twilio().post(url("simulring", params))
    assert ok(res) == simulring_doc(params, THREE, 42, whisper_url(
        ("Message", "Custom message"), ("Voice", "Polly.Amy")))


@pytest.mark.parametrize("form, expected", [
    ({"DialCallStatus": "completed"}, "<Hangup />"),  # [SIMULRING-4-1]
    ({"DialStatus": "answered"}, "<Hangup />"),  # [SIMULRING-4-2]
    # [SIMULRING-4-4] original: HTTP 302 to the FailUrl
    ({"DialCallStatus": "no-answer"}, f"<Redirect>{FAIL}</Redirect>"),
])
def test_simulring_back_from_the_dial(form: dict[str, str], expected: str) -> None:
    params = [("PhoneNumbers[]", THREE[0]), ("FailUrl", FAIL), ("Dial", "true")]
    assert ok(Twilio().post(url("simulring", params), form)) == X(expected)
    no_fail = [("PhoneNumbers[]", THREE[0]), ("Dial", "true")]  # [SIMULRING-4-3]
    assert ok(Twilio().post(url("simulring", no_fail), form)) == X("<Hangup />")


def test_simulring_answer_grows_linearly_and_stops_at_twilios_limit() -> None:
    ten = [f"+1555000{i:04d}" for i in range(10)]
    small = ok(Twilio().post(url("simulring", [("PhoneNumbers[]", n) for n in ten[:1]])))
    large = ok(Twilio().post(url("simulring", [("PhoneNumbers[]", n) for n in ten])))
    # Each further number adds its own <Number> (its URL does not repeat the whole query):
    # before, 400 numbers gave 6.4 MB of TwiML.
    assert len(large) - len(small) < 9 * 260, (len(small), len(large))
    many = [("PhoneNumbers[]", f"+1555000{i:04d}") for i in range(200)]
    assert bad(Twilio().post(url("simulring", many))) == (
        "PhoneNumbers: at most 10 numbers (Twilio dials at most 10 in one <Dial>); got 200.")


@pytest.mark.parametrize("params, error", [
    ([], "PhoneNumbers[] is required: the numbers to ring at once."),
    ([("PhoneNumbers[0]", "+15550000001"), ("PhoneNumbers[1]", "client:bob")],
     "PhoneNumbers[1] must be a phone number: E.164 like +14155550122, or a US/Canada number "
     "like (415) 555-0122; got 'client:bob'."),
])
def test_simulring_errors_name_the_parameter(params: list[tuple[str, str]], error: str) -> None:
    assert bad(Twilio().post(url("simulring", params))) == error


# -- findme -----------------------------------------------------------------------------------

def findme_doc(params: list[tuple[str, str]], first: str, rest: list[str], timeout: int,
               whisper: str) -> str:
    back = url("findme", params + [("PhoneNumbers[]", n) for n in rest] + [("Dial", "true")])
    return X(f'<Dial action="{amp(back)}" timeout="{timeout}">'
             f'<Number url="{amp(whisper)}">{first}</Number></Dial>')


def test_findme_dials_the_first_and_carries_the_rest() -> None:
    # [FIND-ME-1-1] original: <Dial action="/findme?Dial=true&amp;FailUrl=&amp;Timeout=&amp;
    # Message=&amp;PhoneNumbers%5B%5D=415-555-1313&amp;PhoneNumbers%5B%5D=415-555-1414"
    # timeout="60"><Number url="whisper?Message=&amp;HumanCheck=1">415-555-1212</Number>
    res = Twilio().post(url("findme", [("PhoneNumbers[]", n) for n in THREE]))
    assert ok(res) == findme_doc([], THREE[0], THREE[1:], 60, whisper_url(("HumanCheck", "1")))


def test_findme_with_fail_url_timeout_and_message() -> None:  # [FIND-ME-1-2], [FIND-ME-1-3]
    params = [("FailUrl", FAIL), ("Timeout", "42"), ("Message", "Custom message")]
    res = Twilio().post(url("findme", params + [("PhoneNumbers[]", n) for n in THREE]))
    assert ok(res) == findme_doc(params, THREE[0], THREE[1:], 42, whisper_url(
        ("Message", "Custom message"), ("HumanCheck", "1")))


def test_findme_takes_up_to_ten_numbers() -> None:  # [FIND-ME-1-4]
    ten = [f"415-555-10{i:02d}" for i in range(1, 11)]
    res = Twilio().post(url("findme", [("PhoneNumbers[]", n) for n in ten]))
    assert ok(res) == findme_doc([], ten[0], ten[1:], 60, whisper_url(("HumanCheck", "1")))


def test_findme_more_than_ten_numbers_is_a_400() -> None:  # [FIND-ME-1-5]
    # original: kept only the numbers after the tenth (array_splice's return value) and
    # dialled 415-555-1011 first.
    twelve = [("PhoneNumbers[]", f"415-555-10{i:02d}") for i in range(1, 13)]
    assert bad(Twilio().post(url("findme", twelve))) == (
        "PhoneNumbers: at most 10 numbers (Twilio dials at most 10 in one <Dial>); got 12.")


def test_findme_no_more_numbers() -> None:
    assert ok(Twilio().post(url("findme", [("Dial", "true")]),  # [FIND-ME-1-6]
                            {"DialCallStatus": "no-answer"})) == X("<Hangup />")
    # [FIND-ME-1-7] original: HTTP 302 to the FailUrl
    assert ok(Twilio().post(url("findme", [("Dial", "true"), ("FailUrl", FAIL)]),
                            {"DialCallStatus": "busy"})) == X(f"<Redirect>{FAIL}</Redirect>")


@pytest.mark.parametrize("form", [{"DialStatus": "answered"},  # [FIND-ME-2-1]
                                  {"DialCallStatus": "completed"}])  # [FIND-ME-2-2]
def test_findme_answered_hangs_up(form: dict[str, str]) -> None:
    params = [("Dial", "true"), ("PhoneNumbers[]", THREE[1])]
    assert ok(Twilio().post(url("findme", params), form)) == X("<Hangup />")


def test_findme_walk_tries_each_number_in_order_then_the_fail_url() -> None:
    twilio = Twilio()
    res = ok(twilio.post(url("findme", [("PhoneNumbers[0]", "+15550000001"),
                                        ("PhoneNumbers[1]", "+15550000002"),
                                        ("FailUrl", FAIL)])))
    assert action(res, "Number", "") == "+15550000001"
    second = ok(twilio.post(action(res, "Dial"), {"DialCallStatus": "no-answer"}))
    assert action(second, "Number", "") == "+15550000002"
    assert action(second, "Number", "url").startswith(f"{ORIGIN}/api/twiml/whisper?")
    assert action(second, "Number", "url").endswith("&code=k1")
    last = twilio.post(action(second, "Dial"), {"DialCallStatus": "busy"})
    assert ok(last) == X(f"<Redirect>{FAIL}</Redirect>")


# -- conference -------------------------------------------------------------------------------

def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def test_conference_asks_for_the_pass_code_three_times_at_most() -> None:
    twilio = Twilio()
    here = url("conference", [("Password", "1234")])

    def ask(at: str) -> str:
        # original: <Gather numDigits="4"><Say>Please enter your conference pass code</Say>
        # </Gather><Redirect/> (both to this URL; no limit on tries)
        return X(f'<Gather action="{amp(at)}" numDigits="4"><Say>Please enter your '
                 f"conference pass code</Say></Gather><Redirect>{amp(at)}</Redirect>")

    assert ok(twilio.post(here)) == ask(here)  # [CONFERENCE-1-1]
    once = url("conference", [("Password", "1234"), ("PasswordTries", "1")])
    assert ok(twilio.post(here, {"Digits": "0000"})) == ask(once)  # [CONFERENCE-1-2]
    assert ok(twilio.post(once)) == ask(once)  # silence is not a try
    twice = url("conference", [("Password", "1234"), ("PasswordTries", "2")])
    assert ok(twilio.post(once, {"Digits": "1111"})) == ask(twice)
    assert ok(twilio.post(twice, {"Digits": "2222"})) == X(
        "<Say>Sorry, that pass code is not correct. Good bye.</Say><Hangup />")
    assert "<Conference>" in ok(twilio.post(twice, {"Digits": "1234"}))


def test_conference_short_pass_code_waits_for_three_digits() -> None:
    here = url("conference", [("Password", "12")])
    assert 'numDigits="3"' in ok(Twilio().post(here))


def test_conference_correct_pass_code_joins_the_room_of_this_configuration() -> None:
    res = Twilio().post(url("conference", [("Password", "1234")]), {"Digits": "1234"})
    assert ok(res) == X(  # [CONFERENCE-2-1]
        "<Say>You are now entering the conference line.</Say>"
        "<Dial><Conference>d41d8cd98f00b204e9800998ecf8427e</Conference></Dial>")


@pytest.mark.parametrize("params, expected", [
    ([("Name", "foo")], "<Say>You are now entering the conference line.</Say>"  # [2-2]
                        "<Dial><Conference>foo</Conference></Dial>"),
    ([("Name", "foo"), ("Message", "Custom message")],  # [CONFERENCE-2-3]
     "<Say>Custom message</Say><Dial><Conference>foo</Conference></Dial>"),
    ([("Name", "foo"), ("Message", "https://example.com/recorded-message.mp3")],  # [2-4]
     "<Play>https://example.com/recorded-message.mp3</Play>"
     "<Dial><Conference>foo</Conference></Dial>"),
    ([("Music", "rock")],  # [CONFERENCE-2-5] original: waitUrl="http://twimlets.com/..."
     "<Say>You are now entering the conference line.</Say><Dial><Conference "
     'waitMethod="GET" waitUrl="https://twimlets.com/holdmusic?Bucket=com.twilio.music.rock">'
     "d41d8cd98f00b204e9800998ecf8427e</Conference></Dial>"),
    ([("Music", "https://example.com/hold-music.mp3")],  # [CONFERENCE-2-7]
     "<Say>You are now entering the conference line.</Say><Dial><Conference "
     'waitMethod="GET" waitUrl="https://example.com/hold-music.mp3">'
     "d41d8cd98f00b204e9800998ecf8427e</Conference></Dial>"),
    ([("Music", "jazz"), ("Message", "Hi")],  # not a genre nor a URL: Twilio's default music
     f"<Say>Hi</Say><Dial><Conference>{md5('Hi')}</Conference></Dial>"),
])
def test_conference_rooms_messages_and_music(params: list[tuple[str, str]],
                                             expected: str) -> None:
    assert ok(Twilio().post(url("conference", params))) == X(expected)


MODERATORS = [("Moderators[]", "415-555-1212"), ("Moderators[]", "555-867-5309")]
ROOM = "a5b8b5b4fa69de6fb8dad5cbf3545d9f"  # md5("41555512125558675309"), as twimlets.com


def moderated(start: str) -> str:
    return X("<Say>You are now entering the conference line.</Say>"
             f'<Dial><Conference startConferenceOnEnter="{start}">{ROOM}</Conference></Dial>')


def test_conference_caller_who_is_not_a_moderator_waits() -> None:  # [CONFERENCE-2-8]
    assert ok(Twilio().post(url("conference", MODERATORS))) == moderated("false")


def test_conference_room_hashes_moderators_in_the_order_written() -> None:
    # original: md5 of Message and the normalised Moderators in the array's (URL's) order
    written = [("Moderators[1]", "415-555-1212"), ("Moderators[0]", "555-867-5309")]
    assert ok(Twilio().post(url("conference", written))) == moderated("false")
    swapped = [("Moderators[1]", "555-867-5309"), ("Moderators[0]", "415-555-1212")]
    assert ok(Twilio().post(url("conference", swapped))) == X(
        "<Say>You are now entering the conference line.</Say><Dial><Conference "
        f'startConferenceOnEnter="false">{md5("55586753094155551212")}</Conference></Dial>')


@pytest.mark.parametrize("form", [
    {"From": "+1-415-555-1212"},  # [CONFERENCE-2-10]
    {"From": "+14155551212"},
    {"From": "4155551212"},
    {"To": "+1-555-867-5309"},  # [CONFERENCE-2-11]: the conference line is a moderator
])
def test_conference_moderator_starts_it(form: dict[str, str]) -> None:
    assert ok(Twilio().post(url("conference", MODERATORS), form)) == moderated("true")


def test_conference_a_voice_sdk_caller_cannot_claim_the_line_as_moderator() -> None:
    # original: To was trusted whoever called; a Voice SDK client chooses To itself.
    res = Twilio().post(url("conference", MODERATORS),
                        {"From": "client:alice", "To": "+1-555-867-5309"})
    assert ok(res) == moderated("false")


@pytest.mark.parametrize("caller", NOT_PHONES)
def test_conference_sdk_and_sip_callers_are_never_moderators(caller: str) -> None:
    """Issue 19, point 2: they started the conference as moderators and, being no
    moderator's number, got no SMS either way."""
    params = [("Moderators[]", "+14155550122"), ("EnableSmsNotifications", "1")]
    for form in ({"From": caller}, {"From": caller, "To": "+14155550122"},
                 {"From": "", "Caller": caller}):
        twilio = Twilio()
        res = twilio.post(url("conference", params), {"To": LINE, **form})
        assert ok(res) == X(
            "<Say>You are now entering the conference line.</Say><Dial><Conference "
            f'startConferenceOnEnter="false">{md5("4155550122")}</Conference></Dial>')
        assert [job["to"] for job in twilio.jobs()] == ["+14155550122"]  # told, as anyone


def test_conference_sms_notifications_go_through_the_outbound_queue() -> None:
    # [CONFERENCE-2-9] original: <Message to="4155551212">916-555-0123 has entered your
    # conference.  Call the number this text came from to join.</Message> (and the same to
    # 5558675309) inside the call's TwiML.
    twilio = Twilio()
    params = MODERATORS + [("EnableSmsNotifications", "true")]
    form = {"From": "+19165550123", "Caller": "916-555-0123"}
    assert ok(twilio.post(url("conference", params), form)) == moderated("false")
    body = ("916-555-0123 has entered your conference.  Call the number this text came from "
            "to join.")
    assert twilio.jobs() == [
        {"id": f"conference-{CALL_SID}-1", "type": "sms", "to": "+14155551212",
         "from": LINE, "body": body},
        {"id": f"conference-{CALL_SID}-2", "type": "sms", "to": "+15558675309",
         "from": LINE, "body": body}]


@pytest.mark.parametrize("caller", ["c" * 2_000, "client:" + "c" * 60_000,
                                    "client:Visit evil.example to join"])
def test_conference_sms_never_quotes_an_app_callers_identity(caller: str) -> None:
    """A TwiML App's client sets its own Caller: 2 KB made a body over 1600 characters (a
    job rejected later), 100 KB one too large for a queue message (a 503 with a traceback),
    and any text reached the moderators' phones. It is named as what it is."""
    twilio = Twilio()
    params = MODERATORS[:1] + [("EnableSmsNotifications", "true")]
    assert ok(twilio.post(url("conference", params), {"Caller": caller}))
    assert twilio.jobs() == [
        {"id": f"conference-{CALL_SID}-1", "type": "sms", "to": "+14155551212",
         "from": LINE, "body": "An app or SIP caller has entered your conference.  Call the "
                               "number this text came from to join."}]
    jobs.from_dict(twilio.jobs()[0])  # what the queue trigger will check


def test_conference_sms_is_from_the_line_only_if_it_is_e164_to_its_end() -> None:
    # `$` matched before a final newline: the job then failed the schema's `to`/`from`.
    twilio = Twilio()
    params = MODERATORS[:1] + [("EnableSmsNotifications", "true")]
    assert ok(twilio.post(url("conference", params), {"To": LINE + "\n"}))
    assert [job.get("from") for job in twilio.jobs()] == [None]


@pytest.mark.parametrize("flag", ["", "0"])
def test_conference_sms_notifications_off(flag: str) -> None:
    twilio = Twilio()
    twilio.post(url("conference", MODERATORS + [("EnableSmsNotifications", flag)]))
    assert twilio.jobs() == []


def test_conference_moderator_joining_sends_no_sms() -> None:
    twilio = Twilio()
    twilio.post(url("conference", MODERATORS + [("EnableSmsNotifications", "1")]),
                {"From": "+14155551212"})
    assert twilio.jobs() == []


def test_conference_plain_moderators_is_not_a_list_as_on_twimlets() -> None:
    res = Twilio().post(url("conference", [("Moderators", "415-555-1212")]))
    assert ok(res) == X("<Say>You are now entering the conference line.</Say>"
                        f"<Dial><Conference>{md5('')}</Conference></Dial>")


@pytest.mark.parametrize("params, error", [
    ([("Moderators[]", "+15550000001"), ("Moderators[]", "bob")],
     "Moderators[] must be a phone number: E.164 like +14155550122, or a US/Canada number "
     "like (415) 555-0122; got 'bob'."),
    ([("Password", "1234"), ("PasswordTries", "x")],
     "PasswordTries must be a whole number (the twimlet sets it itself)."),
])
def test_conference_errors_name_the_parameter(params: list[tuple[str, str]], error: str) -> None:
    assert bad(Twilio().post(url("conference", params))) == error


def test_voice_and_language_everywhere_text_is_spoken() -> None:
    # original: not read (twimlets.com); the 2012 voicemail read them for a custom Message
    # only. A deliberate difference (docs/twimlets.md): one rule for every twimlet.
    speech = [("Voice", "Polly.Amy"), ("Language", "en-GB")]
    attrs = 'language="en-GB" voice="Polly.Amy"'
    assert ok(Twilio().post(url("conference", [("Password", "1")] + speech))).count(attrs) == 1
    assert ok(Twilio().post(url("conference", speech))).count(attrs) == 1
    assert ok(Twilio().post(url("whisper", speech), {"From": CALLER})).count(attrs) == 1


def test_a_plus_written_as_is_in_the_url_is_named_in_the_400() -> None:
    """`PhoneNumber=+442071838750` reads as ` 442071838750`: the 400 says why."""
    res = Twilio().post(url("forward", [("PhoneNumber", " 442071838750")]))
    assert bad(res) == ("PhoneNumber must be a phone number: E.164 like +14155550122, or a "
                        "US/Canada number like (415) 555-0122; got '442071838750'. A + in a "
                        "URL's query reads as a space: write it %2B (+44... as %2B44...).")
