"""The send path's log lines hold no whole phone number (issue 19, point 10): a rejected
job, Twilio's refusal quoting the number, and a capacity answer retried, on Azurite and a
Twilio double. The ledger row and the dead letters keep the numbers whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from shared.outbound import QueueItem
from shared.runtime import Runtime
from shared.settings import Settings
from tests.doubles import Reply, TwilioDouble
from tests.helpers import env
from tests.unit.test_redaction import NUMBERS, full_numbers

REFUSED, BUSY, BAD = "+15551234567", "+15559990000", "5551234567"


def test_send_path_log_lines_hold_no_whole_number(
        caplog: pytest.LogCaptureFixture, storage_env: dict[str, str],
        twilio_double: TwilioDouble) -> None:
    twilio_double.by_to = {
        REFUSED: [Reply(400, {"code": 21211, "status": 400, "message":
                              f"The 'To' number {REFUSED} is not a valid phone number."})],
        BUSY: [Reply(400, {"code": 21611, "status": 400, "message":
                           "This 'From' number +15005550006 has exceeded the maximum "
                           "number of queued messages"})]}
    rt = Runtime.build(Settings.from_env(env(TWILIO_API_BASE_URL=twilio_double.url,
                                             **storage_env)))
    jobs = [{"id": "bad-to", "type": "sms", "to": BAD, "body": "hi"},
            {"id": "refused", "type": "sms", "to": REFUSED, "body": "hi"},
            {"id": "busy", "type": "sms", "to": BUSY, "body": "hi"}]

    async def go() -> list[Any]:
        try:
            outcomes = [await rt.processor.process(QueueItem(f"m{i}", json.dumps(job)))
                        for i, job in enumerate(jobs)]
            rows = [await rt.processor.ledger.get(key) for key in ("refused", "busy")]
            queue = await rt.storage.queue(rt.settings.rejected_queue_name)
            letters = [m.content for m in await queue.peek_messages(max_messages=32)]
            return [outcomes, rows, letters]
        finally:
            await rt.close()

    outcomes, rows, letters = asyncio.run(go())
    assert [o.result for o in outcomes] == ["rejected", "rejected", "retry_scheduled"]
    # Whole for operators: the ledger row and the dead letters.
    assert REFUSED in rows[0]["last_error"] and "+15005550006" in rows[1]["last_error"]
    assert sorted(json.loads(t)["original"] for t in letters) == sorted(
        json.dumps(job) for job in jobs[:2])
    assert any(n in caplog.text for n in ("*******4567", "*******0006"))
    assert full_numbers(caplog) == [], f"whole numbers among {NUMBERS}"
