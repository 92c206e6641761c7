"""Medium: `ops deadletters replay` sends an `outcome_unknown` job a second time, without
looking at Twilio, once retention has deleted its ledger row.

Retention deletes final rows (`unknown` and `failed` included) JOB_RETENTION_DAYS (30) after
their last write; dead letters never expire. A 31-day-old `outcome_unknown` dead letter
(Twilio may well have sent it) then finds no row, and the planner says "under the same key
(no row: it was never claimed, so never sent)": the job goes back under its old id, the
worker claims a fresh row and sends at once. `--dry-run` prints the same false promise.
"""

from __future__ import annotations

import asyncio
import json

from ops import letters, replay
from shared import deadletters
from shared.outbound import OutboundProcessor, QueueItem
from shared.twilio_rest import Sent
from tests.helpers import FakeSender, MemoryLedger, MemoryQueues, settings
from tests.unit.test_ops_letters import NOW, Session, message

JOB = {"id": "order-1042", "type": "sms", "to": "+15551234567", "body": "Your order shipped"}
DAY = 86400.0


def unknown_letter(days_old: float) -> letters.Letter:
    text = deadletters.envelope(
        kind="outcome_unknown", reason="Twilio request timed out", original=json.dumps(JOB),
        queue_message_id="q1", job_key=JOB["id"], twilio_code=None, dequeue_count=1,
        at=NOW - days_old * DAY, attempts=5)
    return letters.Letter.read("poison", message(text))


def test_an_outcome_unknown_letter_whose_row_retention_deleted_is_looked_up_first() -> None:
    # The row `order-1042` (status unknown) was deleted by retention 30 days after its last
    # write; the dead letter is still in -poison (dead letters never expire).
    decision = asyncio.run(replay.Planner(Session(), None, "-", None, NOW)  # type: ignore[arg-type]
                           .decide(unknown_letter(days_old=31)))
    assert decision.action == "replay"
    assert "never sent" not in decision.note, decision.note  # what --dry-run prints

    # What the worker does with what replay enqueues (and seeds, if it seeds anything).
    ledger, queues = MemoryLedger(lambda: NOW), MemoryQueues()
    if decision.seed is not None:
        row = {k: v for k, v in decision.seed.items() if k not in ("PartitionKey", "RowKey")}
        ledger.rows[decision.seed["RowKey"]] = row
    sender = FakeSender()
    # Twilio has it: the first attempt's request timed out after Twilio created it.
    sender.find_script = [Sent("SM" + "a" * 32, "delivered")]
    processor = OutboundProcessor(settings(), sender, ledger, queues, clock=lambda: NOW)
    asyncio.run(processor.process(QueueItem("replayed-1", decision.text or "")))
    assert sender.calls == [], "sent a second time without looking at Twilio"
    assert sender.finds, "the worker never looked at Twilio before sending"
