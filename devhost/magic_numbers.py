"""Twilio's magic test numbers, as its test credentials answer them
(twilio.com/docs/iam/test-credentials): a `From` or `To` from these tables gets a fixed
error, so a local run can practise each refusal (and each dead-letter kind) without an
account. Twilio checks the sender first, then the recipient.

Unlike Twilio's test credentials, any other `From` is accepted here (Twilio's would refuse
it, 21606 or 21210): local settings and jobs name senders of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


@dataclass(frozen=True)
class Refusal:
    code: int
    message: str  # `{number}`: the magic number


MESSAGES_FROM = {
    "+15005550001": Refusal(21212, "The 'From' number {number} is not a valid phone number, "
                                   "shortcode, or alphanumeric sender ID."),
    "+15005550007": Refusal(21606, "The 'From' phone number provided ({number}) is not a "
                                   "valid message-capable Twilio phone number for this "
                                   "destination."),
    "+15005550008": Refusal(21611, "This 'From' number has exceeded the maximum number of "
                                   "queued messages."),
}
MESSAGES_TO = {
    "+15005550001": Refusal(21211, "The 'To' number {number} is not a valid phone number."),
    "+15005550002": Refusal(21612, "The 'To' phone number: {number}, is not currently "
                                   "reachable via SMS."),
    "+15005550003": Refusal(21408, "Permission to send an SMS has not been enabled for the "
                                   "region indicated by the 'To' number: {number}."),
    "+15005550004": Refusal(21610, "Attempt to send to unsubscribed recipient {number}."),
    "+15005550009": Refusal(21614, "'To' number {number} is not a valid mobile number."),
}
CALLS_FROM = {
    "+15005550001": Refusal(21212, "The 'From' number {number} is not a valid phone number, "
                                   "shortcode, or alphanumeric sender ID."),
}
CALLS_TO = {
    "+15005550001": Refusal(21217, "Phone number {number} does not appear to be valid."),
    "+15005550002": Refusal(21214, "'To' phone number {number} cannot be reached."),
    "+15005550003": Refusal(21215, "Account not authorized to call {number}. Perhaps you "
                                   "need to enable some international permissions."),
    "+15005550004": Refusal(21216, "Call blocked by Twilio: {number}."),
}
TABLES = {"Messages": (MESSAGES_FROM, MESSAGES_TO), "Calls": (CALLS_FROM, CALLS_TO)}


def refusal(resource: str, form: Mapping[str, str]) -> dict[str, Any] | None:
    """Twilio's error body (code, message, more_info, status) for a create of `resource`
    ("Messages" or "Calls") with these form fields, or None when no magic number is in it."""
    senders, recipients = TABLES.get(resource, ({}, {}))
    for table, number in ((senders, form.get("From", "")), (recipients, form.get("To", ""))):
        found = table.get(number)
        if found is not None:
            return {"code": found.code, "message": found.message.format(number=number),
                    "more_info": MORE_INFO.format(code=found.code), "status": 400}
    return None
