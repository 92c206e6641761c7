"""Low: an edited dead letter takes over another job's key through `ops deadletters replay`.

Replay keys a job by `job.id or envelope["job_key"]`, and trusts `job_key` as written. The
worker only ever writes a job_key that is the original's own id or `msg-<the message id it
was delivered under>`. Someone who can write `-poison` (a monitoring identity scoped to the
dead-letter queues, say, but not to the outbound queue) drops in an envelope whose original
has no `id` and whose `job_key` names a pending job (`order-2000`, `retrying` after a 503).
The operator's routine `replay --all` enqueues the planted text with `id: order-2000`: the
worker sends it (to whoever the plant names) under that key, and the real `order-2000` finds
its key `sent` and is never sent. Refuse a letter whose job_key is neither the original's id
nor `msg-<its queue_message_id>`.
"""

from __future__ import annotations

import asyncio
import json

from ops import letters, replay
from shared import deadletters
from shared.ledger import job_partition
from tests.unit.test_ops_letters import NOW, message
from tests.unit.test_replay_check_since import Session


def test_a_letter_cannot_claim_a_key_its_original_never_had() -> None:
    rows = {"order-2000": {"PartitionKey": job_partition("order-2000"), "RowKey": "order-2000",
                           "status": "retrying", "attempts": 1, "check_since": 0.0,
                           "retry_at": NOW + 60}}
    planted = deadletters.envelope(
        kind="retries_exhausted", reason="Twilio answered HTTP 503",
        original=json.dumps({"type": "sms", "to": "+15557654321",
                             "body": "Your refund is ready: https://evil.example/r"}),
        queue_message_id="q-planted", job_key="order-2000", twilio_code=None,
        dequeue_count=1, at=NOW - 60, attempts=5)
    decision = asyncio.run(replay.Planner(Session(rows), None, "-", None, NOW)  # type: ignore[arg-type]
                           .decide(letters.Letter.read("poison", message(planted))))
    assert decision.action == "skip" or json.loads(decision.text or "{}").get("id") != \
        "order-2000", f"the planted job goes out as order-2000: {decision.note}"
