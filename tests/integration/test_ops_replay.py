"""A replay never sends a job twice, through the real worker path: the outbound processor
with the Table Storage ledger on Azurite and Twilio's REST API on a loopback double; the
dead letters replayed by `python -m ops deadletters replay` in between (issue 19, point 1)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from ops import replay, text
from ops.__main__ import main as ops_main
from shared.credentials import CredentialCache, EnvironmentSource
from shared.ledger import TableLedger, job_partition
from shared.outbound import OutboundProcessor, QueueItem
from shared.settings import Settings
from shared.storage import RetryPolicy, Storage
from shared.twilio_rest import TwilioApi
from tests.doubles import Reply, TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM
from tests.integration.ops_helpers import tool_env

FAST = RetryPolicy(tries=2, timeout_seconds=5, backoff_seconds=(0.05,))
SMS = {"type": "sms", "to": "+15551234567", "body": "Your table is ready."}


class WritesFail:
    """The real table client, whose writes fail as an unreachable storage's do once
    `allowed` writes went through."""

    def __init__(self, table: Any, allowed: int) -> None:
        self.table = table
        self.allowed = allowed

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.table, name)
        if name not in ("create_entity", "update_entity", "upsert_entity"):
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self.allowed <= 0:
                raise ServiceRequestError("Cannot connect to host 127.0.0.1 (storage down)")
            self.allowed -= 1
            return await attr(*args, **kwargs)
        return write


@dataclass
class Worker:
    """The outbound function's processor, on this test's queues and table."""

    settings: Settings
    storage: Storage
    processor: OutboundProcessor

    async def drain(self, deadline_seconds: float = 20) -> None:
        """Receive and process every outbound message (delayed copies included) until the
        queue is empty, as the host does."""
        queue = await self.storage.queue(self.settings.outbound_queue_name)
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            got = [m async for m in queue.receive_messages(max_messages=32,
                                                           visibility_timeout=30)]
            for m in got:
                await self.processor.process(QueueItem(m.id, m.content, m.dequeue_count))
                await queue.delete_message(m)
            props = await queue.get_queue_properties()
            if not got and not props.approximate_message_count:
                return
            await asyncio.sleep(0.2)
        raise AssertionError("the outbound queue did not drain")


@asynccontextmanager
async def worker(env: dict[str, str], twilio: TwilioDouble, *,
                 table: Callable[[Any], Any] = lambda t: t, max_attempts: int = 5,
                 lease_seconds: float = 60) -> AsyncIterator[Worker]:
    settings = Settings.from_env({**env, "TWILIO_API_BASE_URL": twilio.url,
                                  "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                                  "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_FROM_NUMBER": FROM})
    storage = Storage(settings.storage, FAST)
    ledger = TableLedger(lambda: table(storage.table(settings.jobs_table_name)),
                         lease_seconds=lease_seconds, retry=FAST)
    api = TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)), twilio.url)
    processor = OutboundProcessor(settings, api, ledger, storage, max_attempts=max_attempts,
                                  settle_seconds=1, delays=lambda _kind, _n: 1)
    try:
        yield Worker(settings, storage, processor)
    finally:
        await api.close()
        await ledger.close()
        await storage.close()


def ops(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = ops_main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def env(storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> dict[str, str]:
    return tool_env(storage_env, monkeypatch, tmp_path)


def row(env: dict[str, str], key: str) -> dict[str, Any]:
    table = TableClient.from_connection_string(env["AzureWebJobsStorage"],
                                               env["JOBS_TABLE_NAME"])
    return dict(table.get_entity(job_partition(key), key))


async def sent_then_every_write_fails(env: dict[str, str], twilio: TwilioDouble,
                                      job: dict[str, Any]) -> None:
    """The issue's scenario: the job is claimed and sent, then every ledger write fails;
    the host delivers it 5 times, then moves it to -poison as it was."""
    body = json.dumps(job)
    async with worker(env, twilio, table=lambda t: WritesFail(t, allowed=1),
                      lease_seconds=1) as w:
        for delivery in range(1, 6):
            with pytest.raises(Exception):  # noqa: B017 - storage down: the host retries
                await w.processor.process(QueueItem("orig-1", body, delivery))
            await asyncio.sleep(1.1)  # the lease runs out between deliveries
        await (await w.storage.queue(w.settings.poison_queue_name)).send_message(body)
    assert len(twilio.sent()) == 1


def test_a_job_without_id_moved_by_the_host_is_not_sent_twice(
        env: dict[str, str], twilio_double: TwilioDouble,
        capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(sent_then_every_write_fails(env, twilio_double, SMS))
    [letter] = QueueClient.from_connection_string(
        env["AzureWebJobsStorage"], env["OUTBOUND_QUEUE_NAME"] + "-poison").peek_messages()
    key = f"replay-{letter.id}"
    look = text.when(letter.inserted_on.timestamp() - replay.POISON_WINDOW_SECONDS)

    code, out = ops(capsys, "deadletters", "replay", "--all", "--dry-run")
    assert code == 0 and out.splitlines()[0] == (
        f"would replay poison   host_poison       {key}, a new key (the job has no id and the "
        "host moved it as it was: the key it had cannot be known); will look at Twilio for a "
        f"message to +*******4567 since {look} before sending")

    code, out = ops(capsys, "deadletters", "replay", "--all")
    assert code == 0 and out.startswith(f"replayed     poison   host_poison       {key}, "), out
    assert {k: row(env, key)[k] for k in ("status", "attempts")} == {
        "status": "retrying", "attempts": 0}

    async def deliver() -> None:
        async with worker(env, twilio_double) as w:
            await w.drain()
    asyncio.run(deliver())
    assert len(twilio_double.sent()) == 1  # found at Twilio, not sent again
    done = row(env, key)
    assert done["status"] == "sent" and done["sid"] == twilio_double.created[0]["sid"]
    assert done["reconciled"].startswith("found SM")


def test_a_job_with_id_moved_by_the_host_goes_under_its_key_and_is_looked_up(
        env: dict[str, str], twilio_double: TwilioDouble,
        capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(sent_then_every_write_fails(env, twilio_double, {**SMS, "id": "order-9"}))
    claimed = row(env, "order-9")["claimed_at"]
    code, out = ops(capsys, "deadletters", "replay", "--job", "order-9", "--dry-run")
    assert code == 0 and out.splitlines()[0] == (
        "would replay poison   host_poison       order-9 under the same key (row: sending); "
        f"will look at Twilio for a message to +*******4567 since {text.when(claimed)} before "
        "sending")
    assert ops(capsys, "deadletters", "replay", "--job", "order-9")[0] == 0

    async def deliver() -> None:
        async with worker(env, twilio_double) as w:
            await w.drain()
    asyncio.run(deliver())
    assert len(twilio_double.sent()) == 1
    assert row(env, "order-9")["status"] == "sent"


def test_an_unknown_outcome_replayed_is_looked_up_before_it_is_sent(
        env: dict[str, str], twilio_double: TwilioDouble,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Twilio created the message but its answer was lost, and the retries ran out: the
    job's row is `unknown`, its dead letter outcome_unknown. Its replay goes under a new id
    whose row says to look at Twilio first: the message is found, not sent again."""
    twilio_double.script = [Reply(action="accept_then_reset")]

    async def give_up() -> None:
        async with worker(env, twilio_double, max_attempts=1) as w:
            queue = await w.storage.queue(w.settings.outbound_queue_name)
            await queue.send_message(json.dumps({**SMS, "id": "order-5"}))
            await w.drain()
    asyncio.run(give_up())
    assert len(twilio_double.created) == 1 and row(env, "order-5")["status"] == "unknown"

    code, out = ops(capsys, "deadletters", "replay", "--all")
    claimed = row(env, "order-5")["claimed_at"]
    assert code == 0 and out.splitlines()[0] == (
        "replayed     poison   outcome_unknown   order-5 -> order-5.r1, a new id (order-5 is "
        f"unknown); will look at Twilio for a message to +*******4567 since "
        f"{text.when(claimed)} before sending")

    async def deliver() -> None:
        async with worker(env, twilio_double) as w:
            await w.drain()
    asyncio.run(deliver())
    assert len(twilio_double.created) == 1  # nothing sent twice
    replayed = row(env, "order-5.r1")
    assert replayed["status"] == "sent" and replayed["sid"] == twilio_double.created[0]["sid"]

    code, out = ops(capsys, "jobs", "show", "order-5")
    assert code == 0 and out.splitlines()[-1] == (
        f"Replayed as order-5.r1: sent as {replayed['sid']}: Twilio accepted it")
