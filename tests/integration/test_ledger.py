"""The jobs ledger on Azurite's Table Storage: conditional claims race safely, and a claim
survives the network losing its answer (a fault proxy in front of Azurite)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devhost import services
from shared.ledger import (
    LEGACY_PARTITION,
    LEGACY_WEBHOOK_PARTITION,
    ClaimLost,
    TableLedger,
    effect_key,
    job_partition,
)
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


# -- partitions, and rows of the single-partition version --------------------------------

def legacy_rows(storage_env: dict[str, str], now: float) -> None:
    """What a deployment of the single-partition version left behind."""
    from azure.data.tables import TableClient

    tc = TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                            storage_env["JOBS_TABLE_NAME"])
    tc.create_table()
    for key, fields in {
        "old-sent": {"status": "sent", "sid": "SM" + "1" * 32, "attempts": 1},
        "old-retrying": {"status": "retrying", "attempts": 2, "check_since": now - 100},
        "old-sending": {"status": "sending", "attempts": 1, "message_id": "m-old",
                        "claim_id": "c-old", "claimed_at": now - 300, "lease_until": now - 240},
    }.items():
        tc.create_entity({"PartitionKey": LEGACY_PARTITION, "RowKey": key, **fields})
    tc.create_entity({"PartitionKey": LEGACY_WEBHOOK_PARTITION,
                      "RowKey": effect_key("sms:SM" + "2" * 32), "seen_at": now - 60})
    tc.close()


def test_an_upgraded_ledger_resends_nothing_and_keeps_every_history(
        storage_env: dict[str, str]) -> None:
    now = time.time()
    legacy_rows(storage_env, now)

    async def body(table: TableLedger) -> dict[str, Any]:
        sent = await table.claim("old-sent", "m-new")
        retrying = await table.claim("old-retrying", "m-new")
        await table.update(retrying, status="sent", sid="SM" + "3" * 32)
        taken_over = await table.claim("old-sending", "m-new")
        fresh = await table.claim("new-job", "m-new")
        return {
            "sent": (sent.state, sent.record and sent.record["sid"]),
            "retrying": (retrying.state, retrying.partition, retrying.check_since),
            "retrying_row": await table.get("old-retrying"),
            "taken_over": (taken_over.state, taken_over.check_since),
            "fresh": (fresh.state, fresh.partition),
            "effect": await table.effect_seen("sms:SM" + "2" * 32),
            "status": await table.record_status("old-sent", twilio_status="delivered"),
            "sent_row": await table.get("old-sent"),
        }

    out = run(storage_env, body)
    assert out["sent"] == ("done", "SM" + "1" * 32)  # not sent again
    assert out["retrying"] == ("claimed", LEGACY_PARTITION, pytest.approx(now - 100))
    assert out["retrying_row"]["status"] == "sent"  # written where it was
    assert out["retrying_row"]["attempts"] == 3
    # A claim left midway is taken over and checked at Twilio since it began, as before.
    assert out["taken_over"] == ("claimed", pytest.approx(now - 300))
    assert out["fresh"] == ("claimed", job_partition("new-job"))
    assert out["effect"] is True  # a webhook handled before the upgrade is not redone
    assert out["status"] is True and out["sent_row"]["twilio_status"] == "delivered"


def test_without_legacy_rows_the_ledger_never_reads_the_legacy_partition(
        storage_env: dict[str, str]) -> None:
    reads: list[str] = []

    async def body(table: TableLedger) -> None:
        inner = await table._client()  # count point reads by partition
        original = inner.get_entity

        async def get_entity(partition: str, key: str, **kw: Any) -> Any:
            reads.append(partition)
            return await original(partition, key, **kw)

        inner.get_entity = get_entity
        for i in range(5):
            claim = await table.claim(f"j-{i}", "m1")
            await table.update(claim, status="sent", sid="SM" + "4" * 32)
            assert await table.get(f"j-{i}") is not None
        assert await table.get("nothing-here") is None
        assert not await table.effect_seen("sms:SM" + "5" * 32)

    run(storage_env, body)
    assert LEGACY_PARTITION not in reads and LEGACY_WEBHOOK_PARTITION not in reads
    assert reads  # the rows were read, in their own partitions
