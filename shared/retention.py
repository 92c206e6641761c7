"""Keeping the jobs table bounded: a sweep that deletes rows nobody needs any more.

- Job rows in a final state (`sent`, `rejected`, `failed`, `unknown`) whose last write is older
  than `JOB_RETENTION_DAYS` (default 30). A job that is `sending` or `retrying` is never
  deleted, however old.
- Webhook-effect rows older than `WEBHOOK_EFFECT_RETENTION_HOURS` (default 48): Twilio retries
  a webhook within seconds and its status callbacks come within hours.

Age is the table's own `Timestamp` (the last write), compared on the server. A run does
bounded work (`max_deletes`, `max_seconds`), goes partition by partition and writes where it
is after each one to the meta row (PartitionKey `meta`, RowKey `retention`: `last_run_at`,
`last_deleted`, `last_partition` where the next run starts, and the query's `continuation`
in it when a run stopped midway, `complete`), so the next run picks up where an interrupted
or cut-short one stopped. The time is checked on every page (Azure answers a long scan with
pages, some empty), and every call is retried on storage faults like the app's others.
Deletes are conditional on the ETag read: a row written since it was read (a late status
callback) is left for a later run; a row already gone (another run deleting at the same
time) is fine. Two runs at once are harmless.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from shared import redaction
from shared.ledger import FINAL_STATUSES, LEGACY_PARTITION, partitions
from shared.storage import DEFAULT_RETRY, RetryPolicy, retrying

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
                clock: Callable[[], float] = time.monotonic,
                retry: RetryPolicy = DEFAULT_RETRY) -> Sweep:
    """One run over the partitions, from where the last one stopped, within its bounds."""
    now = time.time() if now is None else now
    job_cutoff = dt.datetime.fromtimestamp(now - job_retention_seconds, dt.UTC)
    effect_cutoff = dt.datetime.fromtimestamp(now - effect_retention_seconds, dt.UTC)
    order = partitions()
    meta = await retrying(lambda: _read_meta(table), retry, "reading the retention row")
    start = order.index(meta["last_partition"]) if meta.get("last_partition") in order else 0
    token = _token(meta.get("continuation")) if start or meta.get("last_partition") else None
    began = clock()
    deleted = done = 0
    for i in range(len(order)):
        partition = order[(start + i) % len(order)]
        query = job_filter(partition, job_cutoff) if _is_jobs(partition) else \
            effect_filter(partition, effect_cutoff)
        finished, resume, count = await _sweep_partition(
            table, query, token, max_deletes - deleted, lambda: clock() - began < max_seconds,
            retry)
        deleted += count
        token = None
        if not finished:
            return await _stop(table, now, deleted, done, partition, resume, retry,
                               complete=False)
        done += 1
        next_partition = order[(start + i + 1) % len(order)]
        await _write_meta(table, now, deleted, next_partition, None, retry, complete=False)
    return await _stop(table, now, deleted, done, order[start], None, retry, complete=True)


async def _sweep_partition(table: Any, query: str, token: Any, allowed: int,
                           in_time: Callable[[], bool], retry: RetryPolicy
                           ) -> tuple[bool, Any, int]:
    """Deletes what `query` finds, page by page from `token`, up to `allowed` rows and while
    `in_time()`: (whether the partition is done, the continuation to resume at if not (None:
    its start), how many rows were deleted). The time is checked on every page: Azure may
    answer a query over a large partition with empty pages and a continuation (its 5 s per
    request)."""
    deleted = 0
    resume: Any = token
    async for rows, following in _pages(table, query, token, retry):
        take = rows[:max(0, allowed - deleted)]
        deleted += await _delete(table, take, retry)
        if len(take) < len(rows):
            return False, resume, deleted  # this page again: its rest is still there
        if following is None:
            return True, None, deleted
        resume = following
        if deleted >= allowed or not in_time():
            return False, resume, deleted
    return True, None, deleted


async def _pages(table: Any, query: str, token: Any, retry: RetryPolicy
                 ) -> AsyncIterator[tuple[list[Any], Any]]:
    """(rows, the continuation after them or None) per page. Each page is fetched as a
    fresh query from its continuation, so a page that failed is simply asked again; a
    continuation the service no longer takes starts the partition over."""
    from azure.core.exceptions import HttpResponseError

    while True:
        async def fetch(start: Any = token) -> tuple[list[Any], Any]:
            pager = table.query_entities(query, select=["PartitionKey", "RowKey"],
                                         results_per_page=BATCH).by_page(
                                             continuation_token=start or None)
            try:
                page = await pager.__anext__()
            except StopAsyncIteration:
                return [], None
            rows = [row async for row in page]
            return rows, pager.continuation_token or None

        try:
            rows, following = await retrying(fetch, retry, "reading the jobs table")
        except HttpResponseError as exc:
            if not token or exc.status_code != 400:
                raise
            log.warning("ledger_retention: a stored continuation was refused (%s); the "
                        "partition is read from its start", exc.status_code)
            token = None
            continue
        yield rows, following
        if following is None:
            return
        token = following


async def _delete(table: Any, entities: list[Any], retry: RetryPolicy) -> int:
    """Deletes `entities` (one partition) in one transaction, each only if unchanged since
    it was read; if the transaction fails (one row changed or is gone), one by one."""
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        HttpResponseError,
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
        await retrying(lambda: table.submit_transaction(operations), retry,
                       "deleting old rows")
        return len(entities)
    except (TableTransactionError, HttpResponseError):
        pass  # one row changed or gone (or a retried transaction had landed): one by one
    done: list[bool] = []

    def deleted(*_: Any) -> None:
        done.append(True)

    for e in entities:
        try:
            # The SDK returns quietly for a row already gone (another run deleted it first);
            # `cls` is called only for a delete that happened.
            await retrying(functools.partial(
                table.delete_entity, e["PartitionKey"], e["RowKey"], etag=e.metadata["etag"],
                match_condition=MatchConditions.IfNotModified, cls=deleted), retry,
                "deleting an old row")
        except ResourceModifiedError:
            continue  # written since it was read: younger now, a later run looks again
        except ResourceNotFoundError:
            continue
    return len(done)


def _token(text: Any) -> Any:
    """A continuation stored in the meta row (JSON), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def _read_meta(table: Any) -> dict[str, Any]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return dict(await table.get_entity(META_PARTITION, META_ROW))
    except ResourceNotFoundError:
        return {}


async def _write_meta(table: Any, now: float, deleted: int, next_partition: str,
                      continuation: Any, retry: RetryPolicy, *, complete: bool) -> None:
    from azure.data.tables import UpdateMode

    row = {"PartitionKey": META_PARTITION, "RowKey": META_ROW, "last_run_at": now,
           "last_deleted": deleted, "last_partition": next_partition, "complete": complete,
           "continuation": json.dumps(continuation) if continuation else ""}
    await retrying(lambda: table.upsert_entity(row, mode=UpdateMode.MERGE), retry,
                   "writing the retention row")


async def _stop(table: Any, now: float, deleted: int, done: int, next_partition: str,
                continuation: Any, retry: RetryPolicy, *, complete: bool) -> Sweep:
    await _write_meta(table, now, deleted, next_partition, continuation, retry,
                      complete=complete)
    result = Sweep(deleted, done, complete, next_partition)
    log.log(logging.INFO if complete else logging.WARNING,
            "ledger_retention deleted=%d partitions=%d complete=%s next=%s", deleted, done,
            complete, next_partition)
    return result
