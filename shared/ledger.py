"""The jobs ledger: one Table Storage row per job key, so a job is sent at most once.

A delivery claims the key before it calls Twilio (a conditional insert, or an ETag-matched
update of a row waiting for a retry), and records the SID before the queue message is
completed. A second delivery of the same job finds the row and does not send again.

The one window that remains: Twilio accepted the request and the process died before the
ledger update (one table round trip, a few milliseconds). The row then stays `sending`; a
later delivery finds its lease expired and, rather than risk a duplicate, moves the job to
the `-rejected` queue as `outcome_unknown` for a person to check in the Twilio console.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

PARTITION = "job"
WEBHOOK_PARTITION = "webhook-token"
# How long a claim holds: longer than one Twilio request can take (timeout 15 s).
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Claim:
    """The outcome of `claim`: `state` is `claimed`, `done`, `busy` or `unknown`."""

    state: str
    attempts: int = 0
    record: dict[str, Any] | None = None


# Statuses that end a job key for good: a job enqueued again under such a key is never sent
# (the dead letter says why); re-sending it takes a new id (README: where every job ends).
FINAL_STATUSES = frozenset({"sent", "rejected", "failed", "unknown"})
BURNED_STATUSES = FINAL_STATUSES - {"sent"}


def held_state(record: dict[str, Any], now: float) -> str | None:
    """What an existing row means to a new delivery: `busy` (another one is sending),
    `unknown` (a send stopped midway), `done` (sent, rejected or failed), or None when the
    row waits for a retry and may be claimed."""
    status = record.get("status")
    if status == "sending":
        return "busy" if float(record.get("lease_until", 0)) > now else "unknown"
    return None if status == "retrying" else "done"


class Ledger(Protocol):
    async def claim(self, key: str, message_id: str) -> Claim: ...
    async def record(self, key: str, **fields: Any) -> None: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def token_seen(self, token: str) -> bool: ...
    async def remember_token(self, token: str) -> None: ...


class TableLedger:
    def __init__(self, table_client_factory: Callable[[], Any],
                 clock: Callable[[], float] = time.time,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._factory = table_client_factory
        self._table: Any = None
        self._ready: asyncio.Lock | None = None
        self._clock = clock
        self._lease = lease_seconds

    async def _client(self) -> Any:
        if self._table is not None:
            return self._table
        self._ready = self._ready or asyncio.Lock()
        async with self._ready:  # one client, one create_table, however many jobs arrive
            if self._table is None:
                from azure.core.exceptions import ResourceExistsError

                table = self._factory()
                try:
                    await table.create_table()
                except ResourceExistsError:
                    pass
                self._table = table
        return self._table

    async def claim(self, key: str, message_id: str) -> Claim:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        table = await self._client()
        now = self._clock()
        row = {"PartitionKey": PARTITION, "RowKey": key, "status": "sending", "attempts": 1,
               "lease_until": now + self._lease, "first_message_id": message_id,
               "message_id": message_id, "updated_at": now}
        try:
            await table.create_entity(row)
            return Claim("claimed", 1)
        except ResourceExistsError:
            pass
        existing = await table.get_entity(PARTITION, key)
        record = dict(existing)
        attempts = int(record.get("attempts", 0))
        state = held_state(record, now)
        if state is not None:
            return Claim(state, attempts, record)
        attempts += 1
        update = {"PartitionKey": PARTITION, "RowKey": key, "status": "sending",
                  "attempts": attempts, "lease_until": now + self._lease,
                  "message_id": message_id, "updated_at": now}
        try:
            await table.update_entity(update, mode=UpdateMode.MERGE,
                                      etag=existing.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            return Claim("busy", attempts - 1, record)  # another delivery claimed it first
        return Claim("claimed", attempts)

    async def record(self, key: str, **fields: Any) -> None:
        from azure.data.tables import UpdateMode

        table = await self._client()
        entity = {"PartitionKey": PARTITION, "RowKey": key, "updated_at": self._clock(),
                  **{k: v for k, v in fields.items() if v is not None}}
        await table.upsert_entity(entity, mode=UpdateMode.MERGE)

    async def get(self, key: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._client()
        try:
            return dict(await table.get_entity(PARTITION, key))
        except ResourceNotFoundError:
            return None

    async def token_seen(self, token: str) -> bool:
        """Whether a webhook's side effects already happened (its idempotency token)."""
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._client()
        try:
            await table.get_entity(WEBHOOK_PARTITION, _row_key(token))
        except ResourceNotFoundError:
            return False
        return True

    async def remember_token(self, token: str) -> None:
        from azure.data.tables import UpdateMode

        table = await self._client()
        await table.upsert_entity({"PartitionKey": WEBHOOK_PARTITION, "RowKey": _row_key(token),
                                   "seen_at": self._clock()}, mode=UpdateMode.REPLACE)

    async def close(self) -> None:
        if self._table is not None:
            await self._table.close()


def _row_key(token: str) -> str:
    """Table keys refuse / \\ # ? and control characters."""
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in token)[:512]
