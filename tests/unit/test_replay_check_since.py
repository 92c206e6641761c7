"""Low: `replay --check-since` narrows the look at Twilio below what the ledger knows.

An `outcome_unknown` job's row keeps `check_since`: since when Twilio may hold its message.
Its replay goes under a new id (`.r1`) whose seeded row tells the worker where to look. With
`--check-since`, the operator's value replaces the row's even when it is later: a batch
replay such as `replay --all --check-since 1h` (meant for the id-less host-poison letters)
makes every two-day-old `unknown` job look back one hour only, find nothing and send again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from ops import letters, replay, target
from shared import deadletters
from shared.ledger import job_partition
from shared.settings import Settings
from tests.unit.test_ops_letters import NOW, message

DAY = 86400.0
SENT_AT = NOW - 2 * DAY  # the timed-out attempt that may have reached Twilio
JOB = {"id": "order-1042", "type": "sms", "to": "+15551234567", "body": "Your order shipped"}


class Entity(dict):  # type: ignore[type-arg]
    metadata = {"etag": "e1"}


class Table:
    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    async def get_entity(self, partition: str, key: str) -> Any:
        row = self.rows.get(key)
        if row is None or partition != job_partition(key):
            raise ResourceNotFoundError("The specified resource does not exist.")
        return Entity(row)


class Session:
    target = target.Target("Azurite", Settings(key_vault_url=None))

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self._table = Table(rows)

    def table(self) -> Table:
        return self._table


def test_check_since_never_narrows_what_the_ledger_says_to_look_back_to() -> None:
    rows = {"order-1042": {"PartitionKey": job_partition("order-1042"), "RowKey": "order-1042",
                           "status": "unknown", "check_since": SENT_AT,
                           "claimed_at": SENT_AT, "attempts": 5}}
    letter = letters.Letter.read("poison", message(deadletters.envelope(
        kind="outcome_unknown", reason="Twilio request timed out", original=json.dumps(JOB),
        queue_message_id="q1", job_key="order-1042", twilio_code=None, dequeue_count=1,
        at=SENT_AT + 1800, attempts=5)))
    one_hour_ago = NOW - 3600  # `--check-since 1h`
    decision = asyncio.run(replay.Planner(Session(rows), None, "-", one_hour_ago, NOW)  # type: ignore[arg-type]
                           .decide(letter))
    assert decision.action == "replay" and decision.new_id == "order-1042.r1"
    assert decision.seed is not None
    assert decision.seed["check_since"] <= SENT_AT, (
        f"the worker will look at Twilio only since {decision.seed['check_since']:.0f}, "
        f"after the attempt of {SENT_AT:.0f} that may have sent it")
