"""The incoming call flow from one JSON document, SMS keyword replies, and the events the
webhooks publish for other services."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from shared.settings import Settings, SettingsError
from tests.helpers import env
from tests.unit.test_twimlets import CALLER, ORIGIN, Twilio, X, action

FLOW = {
    "greeting": "Thanks for calling Acme.",
    "blocklist": ["+15550009999"],
    "forward": {"to": "+15551230000", "timeout": 15},
    "voicemail": {"message": "Please leave a message.", "notify": "+15551239999"},
}
VOICE = f"{ORIGIN}/api/voice?code=k1"


def test_no_flow_is_the_greeting() -> None:
    assert Twilio().post(VOICE).body == X("<Say>Hello. Thanks for calling. Goodbye.</Say>")


def test_blocklisted_caller_is_rejected() -> None:
    twilio = Twilio(CALL_FLOW=json.dumps(FLOW))
    assert twilio.post(VOICE, {"From": "+15550009999"}).body == X("<Reject />")


def test_forward_then_voicemail_on_no_answer_walk() -> None:
    twilio = Twilio(CALL_FLOW=json.dumps(FLOW))
    res = twilio.post(VOICE)
    forward = action(res.body, "Redirect", "")
    voicemail = (f"{ORIGIN}/api/twiml/voicemail?Message=Please+leave+a+message."
                 "&Notify=%2B15551239999&Transcribe=false&code=k1")
    assert forward == (f"{ORIGIN}/api/twiml/forward?PhoneNumber=%2B15551230000&Timeout=15&"
                       f"{urlencode([('FailUrl', voicemail)])}&code=k1")
    assert res.body == X("<Say>Thanks for calling Acme.</Say>"
                         f"<Redirect>{forward.replace('&', '&amp;')}</Redirect>")
    dial = twilio.post(forward)
    after = twilio.post(action(dial.body, "Dial"), {"DialCallStatus": "no-answer"})
    assert action(after.body, "Redirect", "") == voicemail
    prompt = twilio.post(voicemail)
    record = voicemail.replace("&code=k1", "&Recorded=true&code=k1")
    assert prompt.body == X(f'<Say>Please leave a message.</Say><Record action="'
                            f'{record.replace("&", "&amp;")}" />')
    recorded = twilio.post(record, {"RecordingUrl": "https://api.twilio.com/r/RE7",
                                    "RecordingSid": "RE" + "7" * 32})
    assert recorded.body == X("<Say>Thanks. Good bye.</Say><Hangup />")
    assert [json.loads(t)["to"] for t in twilio.queues.texts("twilio-outbound")] == [
        "+15551239999"]


def test_flow_voicemail_transcribes_when_asked() -> None:
    flow = {"voicemail": {"notify": "+15551239999", "transcribe": True}}
    twilio = Twilio(CALL_FLOW=json.dumps(flow))
    voicemail = action(twilio.post(VOICE).body, "Redirect", "")
    assert voicemail == (f"{ORIGIN}/api/twiml/voicemail?Notify=%2B15551239999&Transcribe=true"
                         "&code=k1")
    assert 'transcribe="true"' in twilio.post(voicemail).body


def test_blocklist_matches_by_digits() -> None:
    twilio = Twilio(CALL_FLOW=json.dumps(FLOW))
    assert twilio.post(VOICE, {"From": "+1 555 000 9999"}).body == X("<Reject />")
    assert twilio.post(VOICE, {"From": "client:alice"}).body != X("<Reject />")


def test_menu_flow_routes_each_option() -> None:
    flow = {"menu": {"message": "Press 1 for sales, 2 for hours.",
                     "options": {"1": {"forward": "+15551230000"},
                                 "2": {"say": "We are open nine to five."},
                                 "3": {"voicemail": True}}},
            "voice": "Polly.Joanna"}
    twilio = Twilio(CALL_FLOW=json.dumps(flow))
    menu = twilio.post(VOICE)
    menu_url = action(menu.body, "Redirect", "")
    gather = twilio.post(menu_url)
    assert "<Say voice=\"Polly.Joanna\">Press 1 for sales, 2 for hours.</Say>" in gather.body
    hours = twilio.post(action(twilio.post(menu_url, {"Digits": "2"}).body, "Redirect", ""))
    assert hours.body == X('<Say voice="Polly.Joanna">We are open nine to five.</Say>')
    sales_url = action(twilio.post(menu_url, {"Digits": "1"}).body, "Redirect", "")
    sales = twilio.post(sales_url)
    back = f"{sales_url.replace('&code=k1', '')}&Dial=true&code=k1".replace("&", "&amp;")
    assert sales.body == X(f'<Dial action="{back}" timeout="20">+15551230000</Dial>')


@pytest.mark.parametrize("flow, message", [
    ("{", "CALL_FLOW is not JSON"),
    ('{"greting": "x"}', "CALL_FLOW has unknown key(s) ['greting']"),
    ('{"forward": {"to": "555"}}', "CALL_FLOW forward.to must be an E.164 number"),
    ('{"blocklist": ["x"]}', "CALL_FLOW blocklist must be an E.164 number"),
    ('{"menu": {"options": {"1": {"dance": true}}}}', "CALL_FLOW menu.options['1'] must be"),
    ('{"forward": {"to": "+15551230000", "timeout": 0}}', "forward.timeout must be 1 to 600"),
])
def test_bad_flow_is_refused_naming_the_setting(flow: str, message: str) -> None:
    with pytest.raises(SettingsError, match="CALL_FLOW"):
        Settings.from_env(env(CALL_FLOW=flow))
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(CALL_FLOW=flow))
    assert message in str(err.value)


def test_sms_keywords_then_auto_reply_and_inbound_event() -> None:
    twilio = Twilio(SMS_KEYWORDS=json.dumps({"hours": "Open 9 to 5.", "ADDRESS": "1 Main St"}))
    sms = {"MessageSid": "SM" + "7" * 32, "Body": "Hours?", "NumMedia": "1",
           "MediaUrl0": "https://api.twilio.com/media/ME1", "MediaContentType0": "image/png"}
    res = twilio.post(f"{ORIGIN}/api/sms", sms, {"i-twilio-idempotency-token": "t1"})
    assert res.body == X("<Message>Open 9 to 5.</Message>")
    twilio.post(f"{ORIGIN}/api/sms", sms, {"i-twilio-idempotency-token": "t1"})  # a retry
    other = twilio.post(f"{ORIGIN}/api/sms", {**sms, "MessageSid": "SM" + "2" * 32, "Body": "hello"})
    assert other.body == X("<Message>Thanks for your message. We will get back to you soon."
                           "</Message>")
    events = [json.loads(t) for t in twilio.queues.texts("twilio-inbound")]
    assert [e["event_id"] for e in events] == ["SM" + "7" * 32, "SM" + "2" * 32]
    first = events[0]
    del first["received_at"]
    assert first == {"event_id": "SM" + "7" * 32, "type": "sms.received", "version": 1,
                     "channel": "mms",
                     "message_sid": "SM" + "7" * 32, "account_sid": "AC" + "1" * 32,
                     "from": CALLER, "to": "+15005550006", "body": "Hours?",
                     "media": [{"url": "https://api.twilio.com/media/ME1",
                                "content_type": "image/png"}]}


def test_bad_keywords_setting() -> None:
    with pytest.raises(SettingsError, match="SMS_KEYWORDS must map words"):
        Settings.from_env(env(SMS_KEYWORDS='{"HOURS": ""}'))


def test_status_callback_event_and_job_record() -> None:
    twilio = Twilio()
    twilio.ledger.rows["order-7"] = {"status": "sent", "sid": "SM" + "9" * 32}
    form = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003",
            "To": "+15551234567"}
    twilio.post(f"{ORIGIN}/api/status?job=order-7", form)
    [event] = [json.loads(t) for t in twilio.queues.texts("twilio-status")]
    del event["at"]
    assert event == {"event_id": "SM" + "9" * 32 + ":undelivered", "type": "message.status", "version": 1,
                     "sid": "SM" + "9" * 32, "status": "undelivered", "job_id": "order-7",
                     "error_code": "30003", "to": "+15551234567", "from": CALLER}
    assert twilio.ledger.rows["order-7"] == {"status": "sent", "sid": "SM" + "9" * 32,
                                             "twilio_status": "undelivered",
                                             "twilio_error_code": "30003",
                                             "callback_sid": "SM" + "9" * 32}


@pytest.mark.parametrize("count", ["\u00b2", "99999999", "-1", "x"])
def test_odd_num_media_is_not_trusted(count: str) -> None:
    twilio = Twilio()
    res = twilio.post(f"{ORIGIN}/api/sms", {"MessageSid": "SM" + "1" * 32, "Body": "x", "NumMedia": count,
                                             "MediaUrl0": "https://m.example/0"})
    assert res.status == 200
    [event] = [json.loads(t) for t in twilio.queues.texts("twilio-inbound")]
    assert event["media"] == []


def test_odd_numbers_in_twimlet_state_are_400s() -> None:
    twilio = Twilio()
    base = "https://func-x.azurewebsites.net/api/twiml/"
    assert twilio.post(base + "forward?PhoneNumber=%2B15550000001&Timeout=%C2%B2").status == 400
    res = twilio.post(base + "conference?Password=12&PasswordTries=%C2%B2", {"Digits": "1"})
    assert (res.status, res.body) == (400, "PasswordTries must be a whole number (the twimlet "
                                           "sets it itself).\n")
