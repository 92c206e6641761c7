"""The jobs ledger on Azurite's Table Storage: conditional claims race safely, and a claim
survives the network losing its answer (a fault proxy in front of Azurite)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from devhost import services
from shared.ledger import ClaimLost, TableLedger
from shared.settings import Settings
from shared.storage import RetryPolicy, Storage
from tests.faultproxy import Fault, FaultProxy
from tests.helpers import env

FAST = RetryPolicy(tries=4, timeout_seconds=2.0, backoff_seconds=(0.05,))


def ledger(storage_env: dict[str, str], clock: Any = None) -> tuple[TableLedger, Storage]:
    settings = Settings.from_env(env(**storage_env))
    storage = Storage(settings.storage, FAST)
    kwargs = {"clock": clock} if clock else {}
    return TableLedger(lambda: storage.table(settings.jobs_table_name), retry=FAST,
                       **kwargs), storage


def run(storage_env: dict[str, str], body: Any, clock: Any = None) -> Any:
    async def go() -> Any:
        table, storage = ledger(storage_env, clock)
        try:
            return await body(table)
        finally:
            await table.close()
            await storage.close()
    return asyncio.run(go())


@pytest.fixture
def table_proxy(azurite: services.Service, storage_env: dict[str, str]
                ) -> Iterator[tuple[FaultProxy, dict[str, str]]]:
    """Azurite's table endpoint behind a fault proxy."""
    with FaultProxy(f"http://127.0.0.1:{azurite.ports['table']}") as proxy:
        p = azurite.ports
        conn = services.azurite_connection_string(p["blob"], p["queue"], proxy.port)
        yield proxy, {**storage_env, "AzureWebJobsStorage": conn}


def test_concurrent_claims_one_winner(storage_env: dict[str, str]) -> None:
    async def body(table: TableLedger) -> list[str]:
        claims = await asyncio.gather(*(table.claim("job-a", f"m{i}") for i in range(8)))
        return [c.state for c in claims]

    assert sorted(run(storage_env, body)) == ["busy"] * 7 + ["claimed"]


def test_retry_claims_race_on_etag_and_done_rows_stay_done(storage_env: dict[str, str]) -> None:
    async def body(table: TableLedger) -> tuple[list[str], Any, Any]:
        first = await table.claim("job-b", "m0")
        await table.update(first, status="retrying", last_error="HTTP 503")
        claims = await asyncio.gather(*(table.claim("job-b", f"m{i}") for i in range(1, 7)))
        [winner] = [c for c in claims if c.state == "claimed"]
        await table.update(winner, status="sent", sid="SM" + "1" * 32)
        again = await table.claim("job-b", "m9")
        return [c.state for c in claims], again, await table.get("job-b")

    states, again, row = run(storage_env, body)
    assert sorted(states) == ["busy"] * 5 + ["claimed"]
    assert (again.state, again.record["sid"]) == ("done", "SM" + "1" * 32)
    assert (row["status"], row["attempts"], row["first_message_id"]) == ("sent", 2, "m0")


def test_an_expired_lease_is_taken_over_with_a_check(storage_env: dict[str, str]) -> None:
    now = [1000.0]

    async def body(table: TableLedger) -> list[Any]:
        first = await table.claim("job-c", "m1")
        busy = await table.claim("job-c", "m2")
        now[0] += 61
        late = await table.claim("job-c", "m3")
        with pytest.raises(ClaimLost):  # the first attempt can no longer write the row
            await table.update(first, status="sent", sid="SM" + "2" * 32)
        return [first.state, busy.state, busy.wait_seconds, late.state, late.check_since]

    assert run(storage_env, body, lambda: now[0]) == ["claimed", "busy", 60.0, "claimed",
                                                      1000.0]


def test_own_message_redelivered_inside_the_lease_takes_its_claim_back(
        storage_env: dict[str, str]) -> None:
    now = [1000.0]

    async def body(table: TableLedger) -> Any:
        await table.claim("job-d", "m1")
        now[0] += 30  # the host's visibilityTimeout, inside the lease
        return await table.claim("job-d", "m1")

    again = run(storage_env, body, lambda: now[0])
    assert (again.state, again.attempts, again.check_since) == ("claimed", 2, 1000.0)


def test_a_claim_whose_answer_is_lost_is_still_ours(
        table_proxy: tuple[FaultProxy, dict[str, str]]) -> None:
    """The insert reaches the table, its answer never comes back, the retry finds the row:
    the row's claim id is ours, so this delivery goes on (it used to be taken for another
    delivery's claim and the job was dropped)."""
    proxy, storage_env = table_proxy

    async def body(table: TableLedger) -> Any:
        await table.get("warm-up")  # creates the table through the proxy
        proxy.add(Fault("lose_answer", method="POST", path=r"/jobs\w+$"))
        claim = await table.claim("job-e", "m1")
        updated = await table.update(claim, status="sent", sid="SM" + "3" * 32)
        return claim, updated, await table.get("job-e")

    claim, updated, row = run(storage_env, body)
    assert proxy.fired("lose_answer") == 1
    assert (claim.state, claim.attempts) == ("claimed", 1)
    assert (row["status"], row["claim_id"]) == ("sent", claim.claim_id)


def test_an_update_whose_answer_is_lost_is_retried_safely(
        table_proxy: tuple[FaultProxy, dict[str, str]]) -> None:
    proxy, storage_env = table_proxy

    async def body(table: TableLedger) -> Any:
        claim = await table.claim("job-f", "m1")
        proxy.add(Fault("lose_answer", method="PATCH", path=r"job-f"),
                  Fault("lose_request", method="PATCH", path=r"job-f"))
        await table.update(claim, status="sent", sid="SM" + "4" * 32)
        return await table.get("job-f")

    row = run(storage_env, body)
    assert proxy.fired() == 2
    assert (row["status"], row["sid"]) == ("sent", "SM" + "4" * 32)


def test_status_for_an_unknown_job_creates_no_row(storage_env: dict[str, str]) -> None:
    async def body(table: TableLedger) -> Any:
        recorded = await table.record_status("never-sent", twilio_status="delivered")
        claim = await table.claim("never-sent", "m1")
        return recorded, claim.state, await table.get("never-sent")

    recorded, state, row = run(storage_env, body)
    assert (recorded, state, row["status"]) == (False, "claimed", "sending")


def test_posts_cut_on_the_wire_are_retried(azurite: services.Service,
                                           storage_env: dict[str, str]) -> None:
    """What a pooled connection the server has just closed does to a POST (FACTS: idle
    connections): the request dies on the wire. azure-core would not retry a POST; every
    write the app makes is retried, and is safe to repeat."""
    with FaultProxy(f"http://127.0.0.1:{azurite.ports['queue']}") as queues, \
            FaultProxy(f"http://127.0.0.1:{azurite.ports['table']}") as tables:
        p = azurite.ports
        conn = services.azurite_connection_string(p["blob"], queues.port, tables.port)
        settings = Settings.from_env(env(**{**storage_env, "AzureWebJobsStorage": conn}))

        async def go() -> tuple[str, Any]:
            storage = Storage(settings.storage, FAST)
            table = TableLedger(lambda: storage.table(settings.jobs_table_name), retry=FAST)
            try:
                await storage.queue(settings.outbound_queue_name)
                await table.get("warm-up")
                queues.add(Fault("lose_request", method="POST", path="/messages"))
                tables.add(Fault("lose_request", method="POST", path=r"/jobs\w+$"))
                await storage.put(settings.outbound_queue_name, "x")
                claim = await table.claim("cut-1", "m1")
                client = await storage.queue(settings.outbound_queue_name)
                return claim.state, [m.content async for m in client.receive_messages()]
            finally:
                await table.close()
                await storage.close()

        state, messages = asyncio.run(go())
    assert (queues.fired(), tables.fired()) == (1, 1)
    assert (state, messages) == ("claimed", ["x"])
