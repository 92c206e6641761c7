"""The jobs ledger on Azurite's Table Storage: conditional claims race safely."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.ledger import TableLedger
from shared.settings import Settings
from shared.storage import Storage
from tests.helpers import env


def ledger(storage_env: dict[str, str], clock: Any = None) -> tuple[TableLedger, Storage]:
    settings = Settings.from_env(env(**storage_env))
    storage = Storage(settings.storage)
    kwargs = {"clock": clock} if clock else {}
    return TableLedger(lambda: storage.table(settings.jobs_table_name), **kwargs), storage


def test_concurrent_claims_one_winner(storage_env: dict[str, str]) -> None:
    async def go() -> list[str]:
        table, storage = ledger(storage_env)
        try:
            claims = await asyncio.gather(*(table.claim("job-a", f"m{i}") for i in range(8)))
            return [c.state for c in claims]
        finally:
            await table.close()
            await storage.close()

    assert sorted(asyncio.run(go())) == ["busy"] * 7 + ["claimed"]


def test_retry_claims_race_on_etag_and_done_rows_stay_done(storage_env: dict[str, str]) -> None:
    async def go() -> tuple[list[str], Any, Any]:
        table, storage = ledger(storage_env)
        try:
            await table.claim("job-b", "m0")
            await table.record("job-b", status="retrying", last_error="HTTP 503")
            claims = await asyncio.gather(*(table.claim("job-b", f"m{i}") for i in range(6)))
            await table.record("job-b", status="sent", sid="SM1")
            again = await table.claim("job-b", "m9")
            return [c.state for c in claims], again, await table.get("job-b")
        finally:
            await table.close()
            await storage.close()

    states, again, row = asyncio.run(go())
    assert sorted(states) == ["busy"] * 5 + ["claimed"]
    assert (again.state, again.record["sid"]) == ("done", "SM1")
    assert (row["status"], row["attempts"], row["first_message_id"]) == ("sent", 2, "m0")


def test_expired_lease_is_unknown(storage_env: dict[str, str]) -> None:
    now = [1000.0]

    async def go() -> list[str]:
        table, storage = ledger(storage_env, clock=lambda: now[0])
        try:
            first = await table.claim("job-c", "m1")
            busy = await table.claim("job-c", "m2")
            now[0] += 61
            late = await table.claim("job-c", "m3")
            return [first.state, busy.state, late.state]
        finally:
            await table.close()
            await storage.close()

    assert asyncio.run(go()) == ["claimed", "busy", "unknown"]
