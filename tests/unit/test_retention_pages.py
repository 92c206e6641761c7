"""Retention against what Azure does and Azurite does not: a long scan answered with empty
pages and a continuation, and a page that fails once. A table of our own stands in."""

from __future__ import annotations

import asyncio
from typing import Any

from azure.core.exceptions import ServiceRequestError

from shared import retention
from shared.storage import RetryPolicy

FAST = RetryPolicy(tries=3, timeout_seconds=2.0, backoff_seconds=(0.0,))


class Page:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def __aiter__(self) -> Any:
        async def gen() -> Any:
            for row in self.rows:
                yield row
        return gen()


class Pager:
    def __init__(self, table: ScanTable, token: Any) -> None:
        self.table, self.token = table, token
        self.continuation_token: Any = None

    async def __anext__(self) -> Page:
        return await self.table.page(self)


class Query:
    def __init__(self, table: ScanTable, partition: str) -> None:
        self.table, self.partition = table, partition

    def by_page(self, continuation_token: Any = None) -> Pager:
        self.table.queried.append((self.partition, continuation_token))
        pager = Pager(self.table, continuation_token)
        pager.partition = self.partition  # type: ignore[attr-defined]
        return pager


class ScanTable:
    """Partition `job-00` answers `empty` empty pages, each with a continuation, then
    nothing; `fail_once` makes the first page fetch fail as a broken connection would."""

    def __init__(self, empty: int, fail_once: bool = False) -> None:
        self.empty = empty
        self.fail_once = fail_once
        self.queried: list[tuple[str, Any]] = []
        self.meta: dict[str, Any] = {}

    def query_entities(self, query: str, **_: Any) -> Query:
        return Query(self, query.split("'")[1])

    async def page(self, pager: Pager) -> Page:
        if self.fail_once:
            self.fail_once = False
            raise ServiceRequestError("Connection reset by peer")
        n = int((pager.token or {}).get("n", 0))
        if pager.partition == "job-00" and n < self.empty:  # type: ignore[attr-defined]
            pager.continuation_token = {"n": n + 1}
        return Page([])

    async def get_entity(self, *_: Any) -> Any:
        from azure.core.exceptions import ResourceNotFoundError
        if not self.meta:
            raise ResourceNotFoundError("no row")
        return self.meta

    async def upsert_entity(self, row: dict[str, Any], **_: Any) -> None:
        self.meta.update(row)


def run(table: ScanTable, **kw: Any) -> retention.Sweep:
    return asyncio.run(retention.sweep(table, job_retention_seconds=30 * 86400,
                                       effect_retention_seconds=2 * 86400, retry=FAST, **kw))


def test_empty_pages_count_against_the_time_and_the_next_run_resumes_inside() -> None:
    table = ScanTable(empty=1_000_000)  # Azure scanning a huge partition, 5 s a request
    now = iter(range(0, 10_000))
    result = run(table, clock=lambda: float(next(now)), max_seconds=5.0)
    assert not result.complete and result.next_partition == "job-00"
    assert table.meta["last_partition"] == "job-00"
    stopped_at = table.meta["continuation"]
    assert stopped_at == '{"n": 5}'  # five pages, then out of time
    table.empty, table.queried = 7, []
    result = run(table)
    assert result.complete
    assert table.queried[0] == ("job-00", {"n": 5})  # picked up inside the partition


def test_a_page_that_fails_once_is_asked_again() -> None:
    table = ScanTable(empty=3, fail_once=True)
    result = run(table)
    assert result.complete and result.partitions_done == len(retention.partitions())
    assert table.queried[:2] == [("job-00", None), ("job-00", None)]  # the same page again
