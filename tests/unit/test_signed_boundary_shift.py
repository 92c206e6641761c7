"""Low: a captured, signed request can be re-aimed at a URL Twilio never requested, because
the signature does not separate the URL from the form.

Twilio signs `URL + name1 + value1 + name2 + ...` (names sorted). Moving the URL's last
characters into the first form field's name keeps that string, so the signature stays
valid: a status callback Twilio sent to `/api/status?job=order-1042` is accepted as one for
`?job=order-104` when its form's first field is renamed `2AccountSid` ("2" sorts before
every letter). The app checks SID shapes and names its effects by SIDs, but it accepts form
field names no Twilio request has (a digit, `&`, `=`, `?` first), and its effect rows expire
after WEBHOOK_EFFECT_RETENTION_HOURS: from then on (or if the original's effect was never
recorded, e.g. answered 503) the replay writes `callback_sid` onto another job's row, which
`OutboundProcessor._look_up` takes as proof that job was sent (an ambiguous `order-104` is
then marked sent without being sent). The same shift can drop trailing twimlet settings
(`&AllowedCallers[0]=...`, `&EnableSmsNotifications=true`) from a captured twimlet URL.
Refusing form names Twilio never sends (not `[A-Za-z][A-Za-z0-9_]*`) closes it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from shared.webhooks import WebhookRequest
from tests.helpers import ACCOUNT_SID, MemoryLedger, MemoryQueues, sign
from tests.unit.test_webhook_guards import BASE, handle, hooks

CALLBACK = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": "+15005550006",
            "MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered",
            "SmsSid": "SM" + "7" * 32, "SmsStatus": "delivered", "To": "+15551234567"}


def test_a_status_callback_cannot_be_moved_to_another_jobs_row() -> None:
    signed_url = BASE + "status?job=order-1042"
    signature = sign(signed_url, CALLBACK)  # what Twilio sent, captured
    shifted = {"2" + k if k == "AccountSid" else k: v for k, v in CALLBACK.items()}
    request = WebhookRequest("POST", BASE + "status?job=order-104",
                             {"content-type": "application/x-www-form-urlencoded",
                              "x-twilio-signature": signature},
                             urlencode(shifted).encode())
    ledger = MemoryLedger()
    # order-104 timed out at Twilio once and waits for its look before a resend.
    ledger.rows["order-104"] = {"status": "retrying", "check_since": 1.0, "attempts": 1}
    res = handle(hooks(queues=MemoryQueues(), ledger=ledger), "status", request)
    assert res.status in (400, 403), (
        f"answered {res.status}; order-104's row now says {ledger.rows['order-104']}")
