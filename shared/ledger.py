"""The jobs ledger: one Table Storage row per job key, so that a job is sent once.

A delivery claims the key before it calls Twilio and records the outcome before its queue
message is completed. Every claim has a random `claim_id`, and every later write of that
attempt is conditional on the row still carrying it, so:

- a claim whose insert reached the table but whose answer was lost, and is retried, finds
  its own `claim_id` and goes on (it is not "another delivery's");
- a redelivery of the same queue message (its earlier attempt raised or its process died)
  finds the row `sending` under its own `message_id` and takes the claim over at once;
- another message for the same key finds `busy` while the claim's lease runs, and takes it
  over when the lease has run out (the claimant died).

Whenever a claim is taken over from an attempt that may have reached Twilio (it stopped
midway, or its request timed out after it was written), the row keeps `check_since`, and the
new attempt looks for the message or call at Twilio before it sends (`shared.outbound`).

Row fields (PartitionKey `job`, RowKey the job key): `status` (`sending`, `retrying`, `sent`,
`rejected`, `failed`, `unknown`), `attempts`, `claim_id`, `message_id`, `first_message_id`,
`claimed_at`, `lease_until`, `check_since` (0: nothing to check), `absent_at` (when a look at
Twilio first found nothing: a second look a settle time later must agree before a resend),
`sid`, `twilio_status`, `twilio_error_code`, `twilio_code`, `last_error`, `ambiguous`
(attempts whose outcome at Twilio was unknown), `reconciled` (what the last check at Twilio
found), `callback_sid`, `retry_at`; the table's own `Timestamp` is the time of the last
write. Times are epoch seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.storage import DEFAULT_RETRY, RetryPolicy, retrying

PARTITION = "job"
WEBHOOK_PARTITION = "webhook-effect"
# One attempt (a check at Twilio, the send, the ledger writes) is cut off after
# ATTEMPT_SECONDS (shared.outbound); a claim holds a little longer, so that a claim is
# never taken over from an attempt that is still running.
ATTEMPT_SECONDS = 45.0
LEASE_SECONDS = 60.0

# Statuses that end a job key for good: a job enqueued again under such a key is never sent
# (the dead letter says why); re-sending it takes a new id (README: where every job ends).
FINAL_STATUSES = frozenset({"sent", "rejected", "failed", "unknown"})
BURNED_STATUSES = FINAL_STATUSES - {"sent"}


class ClaimLost(RuntimeError):
    """Another delivery took the claim over; this attempt must not write the row."""


@dataclass(frozen=True)
class Claim:
    """The outcome of `claim`: `state` is `claimed`, `done` (the row is final) or `busy`
    (another delivery holds a live claim, for `wait_seconds` more)."""

    state: str
    key: str = ""
    attempts: int = 0
    record: dict[str, Any] | None = None
    claim_id: str = ""
    etag: str | None = None
    check_since: float = 0.0  # > 0: an earlier attempt may have reached Twilio since then
    wait_seconds: float = 0.0
    claimed_at: float = 0.0


def assess(record: dict[str, Any], message_id: str, now: float) -> tuple[str, float]:
    """What a delivery of `message_id` may do with an existing row: `done`, `busy` or
    `claim`, and for `claim` the time since which Twilio must be checked (0: no check).
    The table ledger and the in-memory fake both decide here."""
    status = record.get("status")
    if status in FINAL_STATUSES:
        return "done", 0.0
    earlier = float(record.get("check_since") or 0.0)
    if status == "sending":
        own = record.get("message_id") == message_id
        if not own and float(record.get("lease_until") or 0.0) > now:
            return "busy", 0.0
        # Its attempt stopped midway (this very message is back, or the lease ran out):
        # it may have reached Twilio.
        started = float(record.get("claimed_at") or 0.0) or now - LEASE_SECONDS
        return "claim", min(earlier, started) if earlier else started
    # `retrying`, or a row without a status: free to claim.
    return "claim", earlier


def claim_fields(key: str, message_id: str, claim_id: str, attempts: int, now: float,
                 check_since: float, lease_seconds: float) -> dict[str, Any]:
    """A claim's row fields. Each property costs serialising on every write, so a first
    claim writes no `check_since` (absent: 0) and no time of its own (the table's
    `Timestamp` is the time of the last write)."""
    fields = {"PartitionKey": PARTITION, "RowKey": key, "status": "sending",
              "attempts": attempts, "claim_id": claim_id, "message_id": message_id,
              "claimed_at": now, "lease_until": now + lease_seconds}
    if attempts > 1:
        fields["check_since"] = check_since
    return fields


def effect_key(name: str) -> str:
    """A webhook side effect's row key: hashed, so no caller text reaches a table key and
    no two names collide after sanitising."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


class Ledger(Protocol):
    async def claim(self, key: str, message_id: str) -> Claim: ...
    async def update(self, claim: Claim, **fields: Any) -> Claim: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def record_status(self, key: str, **fields: Any) -> bool: ...
    async def effect_seen(self, name: str) -> bool: ...
    async def remember_effect(self, name: str) -> None: ...


class TableLedger:
    def __init__(self, table_client_factory: Callable[[], Any],
                 clock: Callable[[], float] = time.time,
                 lease_seconds: float = LEASE_SECONDS,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self._factory = table_client_factory
        self._table: Any = None
        self._ready: asyncio.Lock | None = None
        self._clock = clock
        self._lease = lease_seconds
        self._retry = retry

    async def _client(self) -> Any:
        if self._table is not None:
            return self._table
        self._ready = self._ready or asyncio.Lock()
        async with self._ready:  # one client, one create_table, however many jobs arrive
            if self._table is None:
                table = self._factory()
                await self._call("creating the jobs table", _create_table, table)
                self._table = table
        return self._table

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` with retries: every write here is safe to repeat (a retried
        insert or update that landed is recognised by its `claim_id`)."""
        return await retrying(lambda: fn(*args, **kwargs), self._retry, what)

    async def claim(self, key: str, message_id: str) -> Claim:
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        table = await self._client()
        claim_id = uuid.uuid4().hex
        for _ in range(5):
            now = self._clock()
            row = claim_fields(key, message_id, claim_id, 1, now, 0.0, self._lease)
            try:
                # No entity echoed back: nothing to decode but the ETag.
                meta = await self._call("claiming a job", table.create_entity, row,
                                        response_preference="return-no-content")
                return Claim("claimed", key, 1, None, claim_id, meta.get("etag"),
                             claimed_at=now)
            except ResourceExistsError:
                pass
            try:
                existing = await self._call("reading a job", table.get_entity, PARTITION, key)
            except ResourceNotFoundError:
                continue  # deleted in between: insert again
            record, etag = dict(existing), existing.metadata["etag"]
            attempts = int(record.get("attempts") or 0)
            if record.get("claim_id") == claim_id:
                # Our own insert or update landed and its answer was lost: still ours.
                return Claim("claimed", key, attempts, record, claim_id, etag,
                             float(record.get("check_since") or 0.0),
                             claimed_at=float(record.get("claimed_at") or now))
            state, since = assess(record, message_id, now)
            if state != "claim":
                wait = float(record.get("lease_until") or 0.0) - now
                return Claim(state, key, attempts, record, wait_seconds=max(0.0, wait))
            update = {**claim_fields(key, message_id, claim_id, attempts + 1, now, since,
                                     self._lease),
                      "first_message_id": record.get("first_message_id") or
                      record.get("message_id")}
            try:
                meta = await self._call("claiming a job", table.update_entity, update,
                                        mode=UpdateMode.MERGE, etag=etag,
                                        match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another delivery changed it, or our retried update landed: look again
            return Claim("claimed", key, attempts + 1, record, claim_id, meta.get("etag"),
                         since, claimed_at=now)
        raise ClaimLost(f"job {key}: the row kept changing while claiming it")

    async def update(self, claim: Claim, **fields: Any) -> Claim:
        """Merge `fields` into the row while `claim` still holds it (`ClaimLost` if not)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._client()
        entity = _entity(claim.key, fields)
        etag = claim.etag
        for _ in range(5):
            try:
                meta = await self._call("updating a job", table.update_entity, entity,
                                        mode=UpdateMode.MERGE, etag=etag,
                                        match_condition=MatchConditions.IfNotModified)
                return replace(claim, etag=meta.get("etag"))
            except ResourceModifiedError:
                pass  # a status callback wrote meanwhile, or our retried write landed
            except ResourceNotFoundError:
                raise ClaimLost(f"job {claim.key}: its row is gone") from None
            current = await self._call("reading a job", table.get_entity, PARTITION,
                                       claim.key)
            if current.get("claim_id") != claim.claim_id:
                raise ClaimLost(f"job {claim.key}: another delivery took the claim over")
            etag = current.metadata["etag"]
        raise ClaimLost(f"job {claim.key}: the row kept changing while updating it")

    async def get(self, key: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._client()
        try:
            return dict(await self._call("reading a job", table.get_entity, PARTITION, key))
        except ResourceNotFoundError:
            return None

    async def record_status(self, key: str, **fields: Any) -> bool:
        """A status callback's fields, merged into the job's row if there is one. An unknown
        key creates nothing, so it cannot block a later job with that id."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._client()
        entity = _entity(key, fields)
        try:
            await self._call("recording a status", table.update_entity, entity,
                             mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            return False
        return True

    async def effect_seen(self, name: str) -> bool:
        """Whether a webhook's side effects already happened (a SID or Twilio's token)."""
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._client()
        try:
            await self._call("reading a webhook effect", table.get_entity, WEBHOOK_PARTITION,
                             effect_key(name))
        except ResourceNotFoundError:
            return False
        return True

    async def remember_effect(self, name: str) -> None:
        from azure.data.tables import UpdateMode

        table = await self._client()
        entity = {"PartitionKey": WEBHOOK_PARTITION, "RowKey": effect_key(name),
                  "seen_at": self._clock()}
        await self._call("recording a webhook effect", table.upsert_entity, entity,
                         mode=UpdateMode.REPLACE)

    async def close(self) -> None:
        if self._table is not None:
            await self._table.close()


def _entity(key: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A merge of `fields` into the job's row; None means "leave it as it is"."""
    return {"PartitionKey": PARTITION, "RowKey": key,
            **{k: v for k, v in fields.items() if v is not None}}


async def _create_table(table: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    try:
        await table.create_table()
    except ResourceExistsError:
        pass
