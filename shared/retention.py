"""Keeping the jobs table bounded: a sweep that deletes rows nobody needs any more.

- Job rows in a final state (`sent`, `rejected`, `failed`, `unknown`) whose last write is older
  than `JOB_RETENTION_DAYS` (default 30). A job that is `sending` or `retrying` is never
  deleted, however old.
- Webhook-effect rows older than `WEBHOOK_EFFECT_RETENTION_HOURS` (default 48): Twilio retries
  a webhook within seconds and its status callbacks come within hours.

Age is the table's own `Timestamp` (the last write), compared on the server. A run does
bounded work (`max_deletes`, `max_seconds`), goes partition by partition and writes where it
is after each one to the meta row (PartitionKey `meta`, RowKey `retention`: `last_run_at`,
`last_deleted`, `last_partition` where the next run starts, `complete`), so the next run
picks up where an interrupted or cut-short one stopped. Deletes are conditional on the ETag
read: a row written since it was read (a late status callback) is left for a later run; a row
already gone (another run deleting at the same time) is fine. Two runs at once are harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import redaction
from shared.ledger import FINAL_STATUSES, LEGACY_PARTITION, partitions

log = redaction.logger("shared.retention")  # phone numbers masked

META_PARTITION = "meta"
META_ROW = "retention"
BATCH = 100  # a table transaction holds at most 100 operations, all in one partition
MAX_DELETES = 200_000
MAX_SECONDS = 120.0


@dataclass(frozen=True)
class Sweep:
    deleted: int
    partitions_done: int
    complete: bool  # every partition was swept in this run
    next_partition: str  # where the next run starts


def job_filter(partition: str, cutoff: dt.datetime) -> str:
    statuses = " or ".join(f"status eq '{s}'" for s in sorted(FINAL_STATUSES))
    return f"PartitionKey eq '{partition}' and Timestamp lt {_when(cutoff)} and ({statuses})"


def effect_filter(partition: str, cutoff: dt.datetime) -> str:
    return f"PartitionKey eq '{partition}' and Timestamp lt {_when(cutoff)}"


def _when(instant: dt.datetime) -> str:
    return "datetime'" + instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def _is_jobs(partition: str) -> bool:
    return partition.startswith("job-") or partition == LEGACY_PARTITION


async def sweep(table: Any, *, job_retention_seconds: float, effect_retention_seconds: float,
                now: float | None = None, max_deletes: int = MAX_DELETES,
                max_seconds: float = MAX_SECONDS,
                clock: Callable[[], float] = time.monotonic) -> Sweep:
    """One run over the partitions, from where the last one stopped, within its bounds."""
    now = time.time() if now is None else now
    job_cutoff = dt.datetime.fromtimestamp(now - job_retention_seconds, dt.UTC)
    effect_cutoff = dt.datetime.fromtimestamp(now - effect_retention_seconds, dt.UTC)
    order = partitions()
    meta = await _read_meta(table)
    start = order.index(meta["last_partition"]) if meta.get("last_partition") in order else 0
    began = clock()
    deleted = done = 0
    for i in range(len(order)):
        partition = order[(start + i) % len(order)]
        query = job_filter(partition, job_cutoff) if _is_jobs(partition) else \
            effect_filter(partition, effect_cutoff)
        finished, count = await _sweep_partition(table, query, max_deletes - deleted,
                                                 lambda: clock() - began < max_seconds)
        deleted += count
        if not finished:
            return await _stop(table, now, deleted, done, partition, complete=False)
        done += 1
        next_partition = order[(start + i + 1) % len(order)]
        await _write_meta(table, now, deleted, next_partition, complete=False)
    return await _stop(table, now, deleted, done, order[start], complete=True)


async def _sweep_partition(table: Any, query: str, allowed: int,
                           in_time: Callable[[], bool]) -> tuple[bool, int]:
    """Deletes what `query` finds, up to `allowed` rows; (whether the partition is done,
    how many rows were deleted)."""
    deleted = 0
    batch: list[Any] = []
    async for entity in table.query_entities(query, select=["PartitionKey", "RowKey"],
                                             results_per_page=BATCH):
        if deleted + len(batch) >= allowed or not in_time():
            deleted += await _delete(table, batch)
            return False, deleted
        batch.append(entity)
        if len(batch) == BATCH:
            deleted += await _delete(table, batch)
            batch = []
    deleted += await _delete(table, batch)
    return True, deleted


async def _delete(table: Any, entities: list[Any]) -> int:
    """Deletes `entities` (one partition) in one transaction, each only if unchanged since
    it was read; if the transaction fails (one row changed or is gone), one by one."""
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        ResourceModifiedError,
        ResourceNotFoundError,
    )
    from azure.data.tables import TableTransactionError

    if not entities:
        return 0
    operations = [("delete", e, {"etag": e.metadata["etag"],
                                 "match_condition": MatchConditions.IfNotModified})
                  for e in entities]
    try:
        await table.submit_transaction(operations)
        return len(entities)
    except TableTransactionError:
        pass
    done: list[bool] = []
    for e in entities:
        try:
            # The SDK returns quietly for a row already gone (another run deleted it first);
            # `cls` is called only for a delete that happened.
            await table.delete_entity(e["PartitionKey"], e["RowKey"], etag=e.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified,
                                      cls=lambda *_: done.append(True))
        except ResourceModifiedError:
            continue  # written since it was read: younger now, a later run looks again
        except ResourceNotFoundError:
            continue
    return len(done)


async def _read_meta(table: Any) -> dict[str, Any]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return dict(await table.get_entity(META_PARTITION, META_ROW))
    except ResourceNotFoundError:
        return {}


async def _write_meta(table: Any, now: float, deleted: int, next_partition: str, *,
                      complete: bool) -> None:
    from azure.data.tables import UpdateMode

    await table.upsert_entity({"PartitionKey": META_PARTITION, "RowKey": META_ROW,
                               "last_run_at": now, "last_deleted": deleted,
                               "last_partition": next_partition, "complete": complete},
                              mode=UpdateMode.MERGE)


async def _stop(table: Any, now: float, deleted: int, done: int, next_partition: str, *,
                complete: bool) -> Sweep:
    await _write_meta(table, now, deleted, next_partition, complete=complete)
    result = Sweep(deleted, done, complete, next_partition)
    log.log(logging.INFO if complete else logging.WARNING,
            "ledger_retention deleted=%d partitions=%d complete=%s next=%s", deleted, done,
            complete, next_partition)
    return result
