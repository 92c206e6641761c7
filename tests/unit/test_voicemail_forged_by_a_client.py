"""Medium: a Voice SDK client texts the owner whatever it likes, as often as it likes,
through the voicemail twimlet.

The voicemail twimlet tells its stages apart by form fields only: `RecordingUrl` (the
<Record> action) and `TranscriptionStatus` (the transcription callback). Both, with
`RecordingSid` and `TranscriptionText`, are in RUNTIME_FIELDS, so they are read from the
POST form, which a Voice SDK client behind a TwiML App fills with its own parameters,
signed by Twilio (docs/security.md says so). A client whose TwiML App points at
`/api/twiml/voicemail?Notify=...` sends, on the call's very first request,
`TranscriptionStatus=completed`, `TranscriptionText=<anything, 1600 chars>`,
`RecordingUrl=x` and a fresh random `RecordingSid`: the owner's Notify number gets an SMS
from the owner's own Twilio number with a genuine api.twilio.com link and the client's text
(a phishing link) under it, once per call, each under a new `voicemail-<RecordingSid>` id,
so de-duplication never applies. The client's identity is quoted as the caller too.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlencode

from tests.helpers import ACCOUNT_SID, MemoryLedger, MemoryQueues
from tests.unit.test_webhook_guards import handle, hooks, post

PHISH = "Your account is locked. Verify now at https://evil.example/login"


def sdk_call(recording_sid: str) -> dict[str, str]:
    """The first request of a Voice SDK call: Twilio's fields, then the client's params."""
    return {"AccountSid": ACCOUNT_SID, "ApplicationSid": "AP" + "3" * 32,
            "CallSid": "CA" + secrets.token_hex(16), "CallStatus": "ringing",
            "Direction": "inbound", "From": "client:evil.example", "Caller": "client:evil.example",
            "To": "", "ApiVersion": "2010-04-01",
            # the client's own parameters (device.connect({params: {...}}))
            "TranscriptionStatus": "completed", "TranscriptionText": PHISH,
            "RecordingUrl": "x", "RecordingSid": recording_sid}


def test_a_calls_first_request_cannot_pass_itself_off_as_a_recording_or_transcription() -> None:
    queues = MemoryQueues()
    hook = hooks(queues=queues, ledger=MemoryLedger())
    query = urlencode({"Notify": "+15551239999"})
    for _ in range(3):
        res = handle(hook, "twiml/voicemail",
                     post("twiml/voicemail", sdk_call("RE" + secrets.token_hex(16)),
                          query=query))
        assert res.status in (200, 400)
    texted = [json.loads(t)["body"] for t in queues.texts("twilio-outbound")]
    assert texted == [], f"{len(texted)} SMS queued to the owner, e.g. {texted[0]!r}"
