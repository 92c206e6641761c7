"""Events for other Azure services: what happened on the phone, as JSON queue messages.

Each event has a stable `event_id`; delivery is at least once (a queue), so consumers
should drop an `event_id` they have seen. Version 1 fields are documented in docs/webhooks.md.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from shared.signature import FormParams
from shared.storage import MAX_MESSAGE_BYTES, queue_bytes

EVENT_VERSION = 1
MAX_MEDIA = 10
_SMALL_NUMBER = re.compile(r"[0-9]{1,3}")
# What Twilio adds to an incoming WhatsApp message (its messaging webhook reference, the
# WhatsApp parameters): the sender's profile, a tapped quick-reply button, a shared
# location, a reply or forward, and click-to-WhatsApp ad referrals (Referral*). Each is
# copied when present, under its snake_case name (ProfileName -> profile_name).
WHATSAPP_FIELDS = ("ProfileName", "WaId", "MessageType", "ButtonText", "ButtonPayload",
                   "Latitude", "Longitude", "Address", "Label", "Forwarded",
                   "FrequentlyForwarded", "OriginalRepliedMessageSid",
                   "OriginalRepliedMessageSender", "ReferralBody", "ReferralHeadline",
                   "ReferralSourceId", "ReferralSourceType", "ReferralSourceUrl",
                   "ReferralMediaId", "ReferralMediaContentType", "ReferralMediaUrl",
                   "ReferralNumMedia", "ReferralCtwaClid")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def inbound_sms(params: FormParams) -> dict[str, Any]:
    first = params.first
    sid = first("MessageSid") or first("SmsSid") or ""
    media = []
    count = first("NumMedia") or "0"
    # Twilio sends at most 10 media; anything else is not Twilio's to trust.
    for i in range(min(int(count), MAX_MEDIA) if _SMALL_NUMBER.fullmatch(count) else 0):
        url = first(f"MediaUrl{i}")
        if url:
            media.append({"url": url, "content_type": first(f"MediaContentType{i}")})
    sender = first("From")
    channel = ("whatsapp" if (sender or "").startswith("whatsapp:") else
               "mms" if media else "sms")
    event = {"event_id": sid, "type": "sms.received", "version": EVENT_VERSION,
             "channel": channel, "message_sid": sid, "account_sid": first("AccountSid"),
             "from": sender, "to": first("To"), "body": first("Body", ""), "media": media,
             "received_at": _now()}
    for name in WHATSAPP_FIELDS:
        value = first(name)
        if value is not None:
            event[_snake(name)] = value
    return event


def status(params: FormParams, job_id: str | None) -> dict[str, Any]:
    """A status callback as an event: a message or call status, an answering machine
    detection result (AnsweredBy, from an async AMD callback), or a recording update."""
    first = params.first
    call_sid = first("CallSid") or ""
    recording_sid = first("RecordingSid")
    if recording_sid and first("RecordingStatus"):
        state = first("RecordingStatus") or ""
        return {**_base(f"{recording_sid}:{state}", call_sid, state, "call.recording", params,
                        job_id),
                "recording_sid": recording_sid, "recording_url": first("RecordingUrl"),
                "recording_duration": first("RecordingDuration")}
    answered_by = first("AnsweredBy")
    if answered_by and not first("CallStatus"):
        return {**_base(f"{call_sid}:amd", call_sid, answered_by, "call.amd", params, job_id),
                "answered_by": answered_by,
                "machine_detection_duration": first("MachineDetectionDuration")}
    is_call = bool(call_sid) and not first("MessageSid")
    sid = call_sid if is_call else first("MessageSid") or ""
    state = (first("CallStatus") if is_call else
             first("MessageStatus") or first("SmsStatus")) or ""
    event = _base(f"{sid}:{state}", sid, state, "call.status" if is_call else "message.status",
                  params, job_id)
    if is_call:
        event["duration"] = first("CallDuration")
        if answered_by:
            event["answered_by"] = answered_by
    return event


def _base(event_id: str, sid: str, state: str, kind: str, params: FormParams,
          job_id: str | None) -> dict[str, Any]:
    first = params.first
    return {"event_id": event_id, "type": kind, "version": EVENT_VERSION, "sid": sid,
            "status": state, "job_id": job_id, "error_code": first("ErrorCode"),
            "to": first("To"), "from": first("From"), "at": _now()}


def row_fields(event: dict[str, Any]) -> dict[str, Any]:
    """What a status event writes on its job's ledger row."""
    if event["type"] == "call.recording":
        return {"recording_status": event["status"], "recording_sid": event["recording_sid"],
                "recording_url": event["recording_url"]}
    if event["type"] == "call.amd":
        return {"answered_by": event["answered_by"]}
    return {"twilio_status": event["status"], "twilio_error_code": event["error_code"],
            "answered_by": event.get("answered_by")}


def fit(event: dict[str, Any]) -> str:
    """The event's JSON text, within a queue message: a signed request can carry fields far
    longer than Twilio's own (a TwiML App passes client parameters through), so the longest
    strings are cut until it fits, and `truncated` names them."""
    text = json.dumps(event, ensure_ascii=False)
    if queue_bytes(text) <= MAX_MESSAGE_BYTES:
        return text
    event = json.loads(text)  # a copy we may cut
    cut: list[str] = []
    while queue_bytes(text) > MAX_MESSAGE_BYTES - 256:
        path, value = max(_strings(event), key=lambda pair: len(pair[1]))
        _set(event, path, value[: len(value) // 2])
        name = ".".join(map(str, path))
        if name not in cut:
            cut.append(name)
        text = json.dumps({**event, "truncated": cut}, ensure_ascii=False)
    return text


def _strings(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(doc, str):
        return [(path, doc)]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    return [found for key, value in items for found in _strings(value, (*path, key))]


def _set(doc: Any, path: tuple[Any, ...], value: str) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value
