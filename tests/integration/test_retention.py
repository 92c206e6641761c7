"""Retention on Azurite's Table Storage: final rows past their time go, nothing pending ever
does, a cut-short run is picked up where it stopped, and two runs at once are harmless."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from azure.data.tables import TableClient

from shared import retention
from shared.ledger import (
    FINAL_STATUSES,
    LEGACY_PARTITION,
    LEGACY_WEBHOOK_PARTITION,
    effect_key,
    effect_partition,
    job_partition,
)
from shared.settings import Settings
from shared.storage import DEFAULT_RETRY, Storage
from tests.helpers import env

DAY = 86400.0
STATUSES = sorted(FINAL_STATUSES) + ["sending", "retrying"]


def seed(storage_env: dict[str, str], jobs: int = 60, effects: int = 20) -> dict[str, set[str]]:
    """Job rows in every status (a few in the legacy partition) and effect rows."""
    tc = TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                            storage_env["JOBS_TABLE_NAME"])
    tc.create_table()
    final, pending, fx = set(), set(), set()
    for i in range(jobs):
        key, status = f"r-{i}", STATUSES[i % len(STATUSES)]
        partition = LEGACY_PARTITION if i % 10 == 0 else job_partition(key)
        tc.create_entity({"PartitionKey": partition, "RowKey": key, "status": status})
        (final if status in FINAL_STATUSES else pending).add(key)
    for i in range(effects):
        row_key = effect_key(f"sms:{i}")
        partition = LEGACY_WEBHOOK_PARTITION if i % 5 == 0 else effect_partition(row_key)
        tc.create_entity({"PartitionKey": partition, "RowKey": row_key, "seen_at": 1.0})
        fx.add(row_key)
    tc.close()
    return {"final": final, "pending": pending, "effects": fx}


def remaining(storage_env: dict[str, str]) -> dict[str, set[str]]:
    with TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                            storage_env["JOBS_TABLE_NAME"]) as tc:
        rows = list(tc.list_entities())
    return {"jobs": {r["RowKey"] for r in rows if "status" in r},
            "effects": {r["RowKey"] for r in rows if "seen_at" in r},
            "meta": {r["RowKey"] for r in rows if r["PartitionKey"] == retention.META_PARTITION}}


class CountingTable:
    """The async TableClient, counting the partitions its queries ask for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.queried: list[str] = []

    def query_entities(self, query: str, **kw: Any) -> Any:
        self.queried.append(query.split("'")[1])
        return self.inner.query_entities(query, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sweeps(storage_env: dict[str, str], *runs: dict[str, Any]) -> list[Any]:
    """Each run's keyword arguments over one table client; runs in one list go at once."""
    async def go() -> list[Any]:
        settings = Settings.from_env(env(**storage_env))
        storage = Storage(settings.storage)
        results = []
        try:
            for group in runs:
                tables = [CountingTable(storage.table(settings.jobs_table_name))
                          for _ in range(group.pop("parallel", 1))]
                out = await asyncio.gather(*(retention.sweep(
                    t, job_retention_seconds=30 * DAY, effect_retention_seconds=2 * DAY,
                    **group) for t in tables))
                results.append((out, [t.queried for t in tables]))
                for t in tables:
                    await t.inner.close()
        finally:
            await storage.close()
        return results
    return asyncio.run(go())


def test_final_rows_past_retention_go_pending_rows_never(storage_env: dict[str, str]) -> None:
    rows = seed(storage_env)
    [((fresh,), _)] = sweeps(storage_env, {"now": time.time()})
    assert fresh.deleted == 0 and fresh.complete  # nothing is old yet
    [((old,), [queried])] = sweeps(storage_env, {"now": time.time() + 31 * DAY})
    assert old.complete and old.deleted == len(rows["final"]) + len(rows["effects"])
    left = remaining(storage_env)
    assert left["jobs"] == rows["pending"]  # however old, never deleted
    assert left["effects"] == set()
    assert set(queried) >= {LEGACY_PARTITION, LEGACY_WEBHOOK_PARTITION, "job-00", "fx-3f"}
    assert left["meta"] == {retention.META_ROW}


def test_effects_go_after_their_window_and_jobs_stay_for_theirs(
        storage_env: dict[str, str]) -> None:
    rows = seed(storage_env)
    [((run,), _)] = sweeps(storage_env, {"now": time.time() + 3 * DAY})
    assert run.deleted == len(rows["effects"])
    left = remaining(storage_env)
    assert left["jobs"] == rows["final"] | rows["pending"] and left["effects"] == set()


def test_a_run_cut_short_is_picked_up_where_it_stopped(storage_env: dict[str, str]) -> None:
    rows = seed(storage_env, jobs=200, effects=0)
    later = time.time() + 31 * DAY
    results = sweeps(storage_env, {"now": later, "max_deletes": 25},
                     {"now": later, "max_deletes": 25}, {"now": later})
    (first,), [first_queries] = results[0]
    (second,), [second_queries] = results[1]
    (last,), _ = results[2]
    assert not first.complete and first.deleted == 25
    # The second run starts at the partition the first stopped in, not at the beginning.
    assert second_queries[0] == first.next_partition == first_queries[-1]
    assert not second.complete and second.deleted == 25
    assert last.complete and first.deleted + second.deleted + last.deleted == len(rows["final"])
    assert remaining(storage_env)["jobs"] == rows["pending"]


def test_two_runs_at_once_are_harmless(storage_env: dict[str, str]) -> None:
    rows = seed(storage_env, jobs=300, effects=40)
    [(both, _)] = sweeps(storage_env, {"now": time.time() + 31 * DAY, "parallel": 2})
    assert all(r.complete for r in both)
    # Each row deleted once in all (a row gone already is not an error).
    assert sum(r.deleted for r in both) == len(rows["final"]) + len(rows["effects"])
    left = remaining(storage_env)
    assert left["jobs"] == rows["pending"] and left["effects"] == set()


def test_a_row_written_after_it_was_read_is_kept(storage_env: dict[str, str]) -> None:
    """A late status callback merging into a sent row makes it young again: the delete,
    conditional on what was read, leaves it."""
    seed(storage_env, jobs=0, effects=0)

    async def go() -> int:
        settings = Settings.from_env(env(**storage_env))
        storage = Storage(settings.storage)
        table = storage.table(settings.jobs_table_name)
        try:
            await table.create_entity({"PartitionKey": job_partition("k1"), "RowKey": "k1",
                                       "status": "sent"})
            read = [e async for e in table.query_entities(
                f"PartitionKey eq '{job_partition('k1')}'")]
            from azure.data.tables import UpdateMode
            await table.update_entity({"PartitionKey": job_partition("k1"), "RowKey": "k1",
                                       "twilio_status": "delivered"}, mode=UpdateMode.MERGE)
            return await retention._delete(table, read, DEFAULT_RETRY)
        finally:
            await table.close()
            await storage.close()

    assert asyncio.run(go()) == 0
    assert remaining(storage_env)["jobs"] == {"k1"}


def test_a_batch_with_one_changed_row_deletes_the_others(storage_env: dict[str, str]) -> None:
    """The transaction fails as a whole; row by row, only the changed one stays."""
    seed(storage_env, jobs=0, effects=0)
    partition = job_partition("b-0")
    keys = [k for k in (f"b-{i}" for i in range(400)) if job_partition(k) == partition][:5]

    async def go() -> int:
        settings = Settings.from_env(env(**storage_env))
        storage = Storage(settings.storage)
        table = storage.table(settings.jobs_table_name)
        try:
            for key in keys:
                await table.create_entity({"PartitionKey": partition, "RowKey": key,
                                           "status": "sent"})
            read = [e async for e in table.query_entities(f"PartitionKey eq '{partition}'")]
            from azure.data.tables import UpdateMode
            await table.update_entity({"PartitionKey": partition, "RowKey": keys[2],
                                       "twilio_status": "delivered"}, mode=UpdateMode.MERGE)
            return await retention._delete(table, read, DEFAULT_RETRY)
        finally:
            await table.close()
            await storage.close()

    assert asyncio.run(go()) == 4
    assert remaining(storage_env)["jobs"] == {keys[2]}


def test_the_timer_trigger_sweeps_the_apps_table(storage_env: dict[str, str]) -> None:
    from shared import runtime
    from tests.helpers import trigger
    from triggers.retention import SCHEDULE

    rows = seed(storage_env, jobs=20, effects=5)
    settings = Settings.from_env(env(**storage_env, JOB_RETENTION_DAYS="1",
                                     WEBHOOK_EFFECT_RETENTION_HOURS="1"))

    async def go() -> None:
        runtime.use(runtime.Runtime.build(settings))
        try:
            await trigger("retention")(None)
        finally:
            await runtime.shutdown()

    assert SCHEDULE == "0 20 * * * *"  # hourly, off the hour
    asyncio.run(go())  # rows are seconds old: kept
    assert remaining(storage_env)["jobs"] == rows["final"] | rows["pending"]
    with TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                            storage_env["JOBS_TABLE_NAME"]) as tc:
        meta = tc.get_entity(retention.META_PARTITION, retention.META_ROW)
    assert meta["complete"] is True and meta["last_deleted"] == 0
    assert meta["last_run_at"] > time.time() - 60


def test_a_run_stopped_inside_a_large_partition_resumes_at_its_continuation(
        storage_env: dict[str, str]) -> None:
    """250 old rows in one partition, a run allowed one page of time: the next run starts
    inside that partition where the first stopped, not at its start."""
    seed(storage_env, jobs=0, effects=0)
    partition = job_partition("big-0")
    with TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                            storage_env["JOBS_TABLE_NAME"]) as tc:
        for n in range(250):
            tc.create_entity({"PartitionKey": partition, "RowKey": f"big-{n:04d}",
                              "status": "sent"})
    later = time.time() + 31 * DAY
    ticks = iter([0.0] + [1000.0] * 10_000)  # the first page in time, then out of time
    results = sweeps(storage_env, {"now": later, "clock": lambda: next(ticks),
                                   "max_seconds": 1.0})
    (first,), _ = results[0]
    assert not first.complete and first.next_partition == partition
    assert first.deleted == retention.BATCH  # one page
    with TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                            storage_env["JOBS_TABLE_NAME"]) as tc:
        meta = tc.get_entity(retention.META_PARTITION, retention.META_ROW)
    assert meta["last_partition"] == partition and meta["continuation"]
    (second,), [queries] = sweeps(storage_env, {"now": later})[0]
    assert second.complete and second.deleted == 150
    assert queries[0] == partition
    assert remaining(storage_env)["jobs"] == set()
