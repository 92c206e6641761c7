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

Rows are spread over `PARTITION_COUNT` partitions by a hash of the key (`job_partition`,
`effect_partition`): Azure serves about 2,000 entities per second per partition, so one
partition would cap the whole app however many instances run. Rows written before that, in
the single partitions `job` and `webhook-effect`, still count: while such rows exist (looked
at every `LEGACY_RECHECK_SECONDS`), a job or effect not found in its own partition is looked
for there, and a job found there stays there until it is final and retention deletes it.

Job row fields (RowKey the job key): `status` (`sending`, `retrying`, `sent`,
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

# Partitions: `job-00` ... `job-3f` and `fx-00` ... `fx-3f`. The single partitions of
# earlier versions are read while they hold rows (see the module's docstring).
PARTITION_COUNT = 64
LEGACY_PARTITION = "job"
LEGACY_WEBHOOK_PARTITION = "webhook-effect"
LEGACY_RECHECK_SECONDS = 600.0
# One attempt (a check at Twilio, the send, the ledger writes) is cut off after
# ATTEMPT_SECONDS (shared.outbound); a claim holds a little longer, so that a claim is
# never taken over from an attempt that is still running.
ATTEMPT_SECONDS = 45.0
LEASE_SECONDS = 60.0

# Statuses that end a job key for good: a job enqueued again under such a key is never sent
# (the dead letter says why); re-sending it takes a new id (docs/reliability.md: where every
# job ends).
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
    partition: str = ""  # where the row lives: its own, or the legacy one


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
                 check_since: float, lease_seconds: float,
                 partition: str | None = None) -> dict[str, Any]:
    """A claim's row fields. Each property costs serialising on every write, so a first
    claim writes no `check_since` (absent: 0) and no time of its own (the table's
    `Timestamp` is the time of the last write)."""
    fields = {"PartitionKey": partition or job_partition(key), "RowKey": key,
              "status": "sending",
              "attempts": attempts, "claim_id": claim_id, "message_id": message_id,
              "claimed_at": now, "lease_until": now + lease_seconds}
    if attempts > 1:
        fields["check_since"] = check_since
    return fields


def job_partition(key: str) -> str:
    """The partition of a job's row: a hash of its key, so keys spread evenly whatever
    their shape (`order-1`, `order-2` ... or `msg-<uuid>`)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return f"job-{digest[0] % PARTITION_COUNT:02x}"


def effect_key(name: str) -> str:
    """A webhook side effect's row key: hashed, so no caller text reaches a table key and
    no two names collide after sanitising."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def effect_partition(row_key: str) -> str:
    """The partition of an effect's row (`row_key` is already a hash)."""
    return f"fx-{int(row_key[:2], 16) % PARTITION_COUNT:02x}"


def partitions() -> list[str]:
    """Every partition the app writes, then the legacy ones (retention sweeps them all)."""
    return ([f"job-{i:02x}" for i in range(PARTITION_COUNT)]
            + [f"fx-{i:02x}" for i in range(PARTITION_COUNT)]
            + [LEGACY_PARTITION, LEGACY_WEBHOOK_PARTITION])


class LegacyRows:
    """Whether a legacy partition may still hold rows: one `top 1` query per partition every
    `recheck_seconds`, shared by every caller meanwhile. A deployment that never had legacy
    rows pays that query and nothing else."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 recheck_seconds: float = LEGACY_RECHECK_SECONDS) -> None:
        self._clock = clock
        self._recheck = recheck_seconds
        self._known: dict[str, tuple[float, bool]] = {}
        self._lookups: dict[str, asyncio.Future[bool]] = {}

    def known(self, partition: str) -> bool | None:
        """The answer while it is fresh, without a call (the hot path: every claim)."""
        known = self._known.get(partition)
        if known is not None and self._clock() - known[0] < self._recheck:
            return known[1]
        return None

    async def present(self, table: Any, partition: str) -> bool:
        known = self.known(partition)
        if known is not None:
            return known
        pending = self._lookups.get(partition)
        if pending is None:
            pending = asyncio.ensure_future(_any_row(table, partition))
            self._lookups[partition] = pending
            try:
                found = await pending
            finally:
                del self._lookups[partition]
            self._known[partition] = (self._clock(), found)
            return found
        return await asyncio.shield(pending)

    def forget(self) -> None:
        """Look again on the next call (tests; an operator's migration)."""
        self._known.clear()


async def read_job(table: Any, key: str, *, legacy: bool = True) -> dict[str, Any] | None:
    """A job's row wherever it lives (its partition, else the legacy one), with its ETag in
    `metadata`; None if there is none. For tools: the app's ledger caches the legacy check."""
    from azure.core.exceptions import ResourceNotFoundError

    for partition in (job_partition(key), LEGACY_PARTITION) if legacy else (job_partition(key),):
        try:
            return await table.get_entity(partition, key)  # type: ignore[no-any-return]
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                raise  # no table at all: the caller says so
    return None


async def _any_row(table: Any, partition: str) -> bool:
    async for _ in table.query_entities(f"PartitionKey eq '{partition}'", select=["RowKey"],
                                        results_per_page=1):
        return True
    return False


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
                 retry: RetryPolicy = DEFAULT_RETRY,
                 legacy: LegacyRows | None = None) -> None:
        self._factory = table_client_factory
        self._table: Any = None
        self._ready: asyncio.Lock | None = None
        self._clock = clock
        self._lease = lease_seconds
        self._retry = retry
        self._legacy = legacy or LegacyRows(clock)

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

    async def table_client(self) -> Any:
        """The async TableClient (retention sweeps with it), the table created once."""
        return await self._client()

    async def _legacy_present(self, table: Any, partition: str) -> bool:
        known = self._legacy.known(partition)
        if known is not None:
            return known
        return bool(await self._call("looking for rows of an earlier version",
                                     self._legacy.present, table, partition))

    async def _get(self, table: Any, partition: str, key: str) -> Any:
        """The entity, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return await self._call("reading a job", table.get_entity, partition, key)
        except ResourceNotFoundError:
            return None

    async def _job_partition(self, table: Any, key: str) -> str:
        """Where `key`'s row is or will be: the legacy partition if it holds the key."""
        if await self._legacy_present(table, LEGACY_PARTITION) and \
                await self._get(table, LEGACY_PARTITION, key) is not None:
            return LEGACY_PARTITION
        return job_partition(key)

    async def claim(self, key: str, message_id: str) -> Claim:
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        table = await self._client()
        partition = await self._job_partition(table, key)
        claim_id = uuid.uuid4().hex
        for _ in range(5):
            now = self._clock()
            row = claim_fields(key, message_id, claim_id, 1, now, 0.0, self._lease, partition)
            try:
                # No entity echoed back: nothing to decode but the ETag.
                meta = await self._call("claiming a job", table.create_entity, row,
                                        response_preference="return-no-content")
                return Claim("claimed", key, 1, None, claim_id, meta.get("etag"),
                             claimed_at=now, partition=partition)
            except ResourceExistsError:
                pass
            existing = await self._get(table, partition, key)
            if existing is None:
                continue  # deleted in between: insert again
            record, etag = dict(existing), existing.metadata["etag"]
            attempts = int(record.get("attempts") or 0)
            if record.get("claim_id") == claim_id:
                # Our own insert or update landed and its answer was lost: still ours.
                return Claim("claimed", key, attempts, record, claim_id, etag,
                             float(record.get("check_since") or 0.0),
                             claimed_at=float(record.get("claimed_at") or now),
                             partition=partition)
            state, since = assess(record, message_id, now)
            if state != "claim":
                wait = float(record.get("lease_until") or 0.0) - now
                return Claim(state, key, attempts, record, wait_seconds=max(0.0, wait),
                             partition=partition)
            update = {**claim_fields(key, message_id, claim_id, attempts + 1, now, since,
                                     self._lease, partition),
                      "first_message_id": record.get("first_message_id") or
                      record.get("message_id")}
            try:
                meta = await self._call("claiming a job", table.update_entity, update,
                                        mode=UpdateMode.MERGE, etag=etag,
                                        match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another delivery changed it, or our retried update landed: look again
            return Claim("claimed", key, attempts + 1, record, claim_id, meta.get("etag"),
                         since, claimed_at=now, partition=partition)
        raise ClaimLost(f"job {key}: the row kept changing while claiming it")

    async def update(self, claim: Claim, **fields: Any) -> Claim:
        """Merge `fields` into the row while `claim` still holds it (`ClaimLost` if not)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._client()
        partition = claim.partition or job_partition(claim.key)
        entity = _entity(claim.key, fields, partition)
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
            current = await self._get(table, partition, claim.key)
            if current is None:
                raise ClaimLost(f"job {claim.key}: its row is gone")
            if current.get("claim_id") != claim.claim_id:
                raise ClaimLost(f"job {claim.key}: another delivery took the claim over")
            etag = current.metadata["etag"]
        raise ClaimLost(f"job {claim.key}: the row kept changing while updating it")

    async def get(self, key: str) -> dict[str, Any] | None:
        table = await self._client()
        row = await self._get(table, job_partition(key), key)
        if row is None and await self._legacy_present(table, LEGACY_PARTITION):
            row = await self._get(table, LEGACY_PARTITION, key)
        return None if row is None else dict(row)

    async def record_status(self, key: str, **fields: Any) -> bool:
        """A status callback's fields, merged into the job's row if there is one. An unknown
        key creates nothing, so it cannot block a later job with that id."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = await self._client()
        for partition in (job_partition(key), LEGACY_PARTITION):
            if partition == LEGACY_PARTITION and \
                    not await self._legacy_present(table, LEGACY_PARTITION):
                break
            try:
                await self._call("recording a status", table.update_entity,
                                 _entity(key, fields, partition), mode=UpdateMode.MERGE)
            except ResourceNotFoundError:
                continue
            return True
        return False

    async def effect_seen(self, name: str) -> bool:
        """Whether a webhook's side effects already happened (a SID or Twilio's token)."""
        from azure.core.exceptions import ResourceNotFoundError

        table = await self._client()
        row_key = effect_key(name)
        for partition in (effect_partition(row_key), LEGACY_WEBHOOK_PARTITION):
            if partition == LEGACY_WEBHOOK_PARTITION and \
                    not await self._legacy_present(table, LEGACY_WEBHOOK_PARTITION):
                break
            try:
                await self._call("reading a webhook effect", table.get_entity, partition,
                                 row_key)
            except ResourceNotFoundError:
                continue
            return True
        return False

    async def remember_effect(self, name: str) -> None:
        from azure.data.tables import UpdateMode

        table = await self._client()
        row_key = effect_key(name)
        entity = {"PartitionKey": effect_partition(row_key), "RowKey": row_key,
                  "seen_at": self._clock()}
        await self._call("recording a webhook effect", table.upsert_entity, entity,
                         mode=UpdateMode.REPLACE)

    async def close(self) -> None:
        if self._table is not None:
            await self._table.close()


def _entity(key: str, fields: dict[str, Any], partition: str) -> dict[str, Any]:
    """A merge of `fields` into the job's row; None means "leave it as it is"."""
    return {"PartitionKey": partition, "RowKey": key,
            **{k: v for k, v in fields.items() if v is not None}}


async def _create_table(table: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    try:
        await table.create_table()
    except ResourceExistsError:
        pass
