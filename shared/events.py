"""Events for other Azure services: what happened on the phone, as JSON queue messages.

Each event has a stable `event_id`; delivery is at least once (a queue), so consumers
should drop an `event_id` they have seen. Version 1 fields are documented in the README.
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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


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
    return {"event_id": sid, "type": "sms.received", "version": EVENT_VERSION,
            "message_sid": sid, "account_sid": first("AccountSid"), "from": first("From"),
            "to": first("To"), "body": first("Body", ""), "media": media,
            "received_at": _now()}


def status(params: FormParams, job_id: str | None) -> dict[str, Any]:
    first = params.first
    is_call = bool(first("CallSid")) and not first("MessageSid")
    sid = (first("CallSid") if is_call else first("MessageSid")) or ""
    state = (first("CallStatus") if is_call else
             first("MessageStatus") or first("SmsStatus")) or ""
    event: dict[str, Any] = {
        "event_id": f"{sid}:{state}", "type": "call.status" if is_call else "message.status",
        "version": EVENT_VERSION, "sid": sid, "status": state, "job_id": job_id,
        "error_code": first("ErrorCode"), "to": first("To"), "from": first("From"),
        "at": _now()}
    if is_call:
        event["duration"] = first("CallDuration")
    return event


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
