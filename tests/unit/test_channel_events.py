"""Inbound WhatsApp on the SMS webhook, and the status callbacks of the sending options
(scheduled and canceled messages, answering machine detection, recordings): each as an
event on its queue and, for status callbacks, on the job's row. Whole documents compared."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_twimlets import ORIGIN, Twilio, X

WA_FROM = "whatsapp:+15551112222"
WA_TO = "whatsapp:+15005550006"


def inbound(twilio: Twilio) -> list[dict[str, Any]]:
    found = [json.loads(t) for t in twilio.queues.texts("twilio-inbound")]
    for event in found:
        del event["received_at"]
    return found


def statuses(twilio: Twilio) -> list[dict[str, Any]]:
    found = [json.loads(t) for t in twilio.queues.texts("twilio-status")]
    for event in found:
        del event["at"]
    return found


def test_whatsapp_message_is_an_sms_received_event_with_its_extra_fields() -> None:
    twilio = Twilio()
    form = {"MessageSid": "SM" + "1" * 32, "From": WA_FROM, "To": WA_TO,
            "Body": "Where is my order?", "NumMedia": "0", "ProfileName": "Ada",
            "WaId": "15551112222", "MessageType": "text", "Forwarded": "true"}
    assert twilio.post(f"{ORIGIN}/api/sms", form).status == 200
    assert inbound(twilio) == [{
        "event_id": "SM" + "1" * 32, "type": "sms.received", "version": 1,
        "channel": "whatsapp", "message_sid": "SM" + "1" * 32,
        "account_sid": "AC" + "1" * 32, "from": WA_FROM, "to": WA_TO,
        "body": "Where is my order?", "media": [], "profile_name": "Ada",
        "wa_id": "15551112222", "message_type": "text", "forwarded": "true"}]


def test_whatsapp_button_and_location_fields() -> None:
    twilio = Twilio()
    twilio.post(f"{ORIGIN}/api/sms", {
        "MessageSid": "SM" + "2" * 32, "From": WA_FROM, "To": WA_TO, "Body": "Yes, confirm",
        "ButtonText": "Yes, confirm", "ButtonPayload": "confirm-1042",
        "OriginalRepliedMessageSid": "SM" + "9" * 32, "OriginalRepliedMessageSender": WA_TO})
    twilio.post(f"{ORIGIN}/api/sms", {
        "MessageSid": "SM" + "3" * 32, "From": WA_FROM, "To": WA_TO, "Body": "",
        "Latitude": "52.3676", "Longitude": "4.9041", "Address": "Dam 1, Amsterdam",
        "Label": "Office", "MessageType": "location"})
    button, location = inbound(twilio)
    assert {k: button[k] for k in ("channel", "button_text", "button_payload",
                                   "original_replied_message_sid",
                                   "original_replied_message_sender")} == {
        "channel": "whatsapp", "button_text": "Yes, confirm", "button_payload": "confirm-1042",
        "original_replied_message_sid": "SM" + "9" * 32, "original_replied_message_sender": WA_TO}
    assert {k: location[k] for k in ("latitude", "longitude", "address", "label",
                                     "message_type")} == {
        "latitude": "52.3676", "longitude": "4.9041", "address": "Dam 1, Amsterdam",
        "label": "Office", "message_type": "location"}


def test_channels_sms_and_mms_and_no_whatsapp_fields_when_absent() -> None:
    twilio = Twilio()
    twilio.post(f"{ORIGIN}/api/sms", {"MessageSid": "SM" + "4" * 32, "Body": "hi"})
    twilio.post(f"{ORIGIN}/api/sms", {"MessageSid": "SM" + "5" * 32, "Body": "", "NumMedia": "1",
                                      "MediaUrl0": "https://api.twilio.com/m/ME1",
                                      "MediaContentType0": "image/jpeg"})
    sms, mms = inbound(twilio)
    assert (sms["channel"], mms["channel"]) == ("sms", "mms")
    assert set(sms) == {"event_id", "type", "version", "channel", "message_sid", "account_sid",
                        "from", "to", "body", "media"}


def test_keyword_replies_work_on_whatsapp() -> None:
    twilio = Twilio(SMS_KEYWORDS=json.dumps({"HOURS": "Open 9 to 5."}))
    res = twilio.post(f"{ORIGIN}/api/sms", {"MessageSid": "SM" + "6" * 32, "From": WA_FROM, "To": WA_TO,
                                             "Body": "hours?", "ProfileName": "Ada"})
    assert res.body == X("<Message>Open 9 to 5.</Message>")


def test_scheduled_and_canceled_message_statuses_reach_the_queue_and_the_row() -> None:
    twilio = Twilio()
    twilio.ledger.rows["reminder-1"] = {"status": "sent", "sid": "SM" + "7" * 32}
    for state in ("scheduled", "canceled"):
        twilio.post(f"{ORIGIN}/api/status?job=reminder-1",
                    {"MessageSid": "SM" + "7" * 32, "MessageStatus": state, "To": "+15551234567"})
    events = statuses(twilio)
    assert [(e["event_id"], e["type"], e["status"]) for e in events] == [
        ("SM" + "7" * 32 + ":scheduled", "message.status", "scheduled"),
        ("SM" + "7" * 32 + ":canceled", "message.status", "canceled")]
    assert twilio.ledger.rows["reminder-1"]["twilio_status"] == "canceled"


def test_async_amd_result_is_an_event_and_lands_on_the_row() -> None:
    twilio = Twilio()
    twilio.ledger.rows["appt-88"] = {"status": "sent", "sid": "CA" + "5" * 32}
    # An AsyncAmdStatusCallback request: CallSid, AnsweredBy, MachineDetectionDuration.
    twilio.post(f"{ORIGIN}/api/status?job=appt-88",
                {"CallStatus": "", "AnsweredBy": "machine_end_beep",
                 "MachineDetectionDuration": "4120"})
    assert statuses(twilio) == [{
        "event_id": "CA" + "5" * 32 + ":amd", "type": "call.amd", "version": 1,
        "sid": "CA" + "5" * 32, "status": "machine_end_beep", "job_id": "appt-88",
        "error_code": None, "to": "+15005550006", "from": "+15551112222",
        "answered_by": "machine_end_beep", "machine_detection_duration": "4120"}]
    assert twilio.ledger.rows["appt-88"] == {"status": "sent", "sid": "CA" + "5" * 32,
                                             "answered_by": "machine_end_beep",
                                             "callback_sid": "CA" + "5" * 32}


def test_call_status_keeps_answered_by() -> None:
    twilio = Twilio()
    twilio.ledger.rows["appt-89"] = {"status": "sent"}
    twilio.post(f"{ORIGIN}/api/status?job=appt-89",
                {"CallStatus": "completed", "CallDuration": "31", "AnsweredBy": "human"})
    [event] = statuses(twilio)
    assert (event["type"], event["status"], event["answered_by"]) == (
        "call.status", "completed", "human")
    assert twilio.ledger.rows["appt-89"] == {"status": "sent", "twilio_status": "completed",
                                             "answered_by": "human",
                                             "callback_sid": "CA" + "5" * 32}


def test_recording_callback_is_an_event_and_lands_on_the_row() -> None:
    twilio = Twilio()
    form = {"CallStatus": "", "RecordingSid": "RE" + "3" * 32, "RecordingStatus": "completed",
            "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE3",
            "RecordingDuration": "42"}
    twilio.ledger.rows["appt-90"] = {"status": "sent"}
    twilio.post(f"{ORIGIN}/api/status?job=appt-90", form)
    assert statuses(twilio) == [{
        "event_id": "RE" + "3" * 32 + ":completed", "type": "call.recording", "version": 1,
        "sid": "CA" + "5" * 32, "status": "completed", "job_id": "appt-90",
        "error_code": None, "to": "+15005550006", "from": "+15551112222",
        "recording_sid": "RE" + "3" * 32, "recording_url": form["RecordingUrl"],
        "recording_duration": "42"}]
    assert twilio.ledger.rows["appt-90"] == {"status": "sent",
                                             "recording_status": "completed",
                                             "recording_sid": "RE" + "3" * 32,
                                             "recording_url": form["RecordingUrl"],
                                             "callback_sid": "CA" + "5" * 32}
