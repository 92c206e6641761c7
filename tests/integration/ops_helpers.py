"""What the `ops` tests share: the tool's settings on this test's Azurite queues and table,
running the tool in-process, and dead letters and ledger rows to seed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from ops.__main__ import main as ops_main
from shared import deadletters
from shared.ledger import job_partition

ROOT = Path(__file__).resolve().parents[2]
JOB = {"id": "order-7", "type": "sms", "to": "+15551234567", "body": "Order 7 shipped."}


def tool_env(storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
             tmp_path: Path) -> dict[str, str]:
    """The tool's settings: this test's Azurite queues and table, no local.settings.json;
    the outbound queue made (the app makes it; replays go there)."""
    values = {**storage_env, "LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    queue(values)
    return values


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ops_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def queue(env: dict[str, str], suffix: str = "") -> QueueClient:
    client = QueueClient.from_connection_string(env["AzureWebJobsStorage"],
                                                env["OUTBOUND_QUEUE_NAME"] + suffix)
    try:
        client.create_queue()
    except Exception:  # noqa: BLE001 - exists already
        pass
    return client


def table(env: dict[str, str]) -> TableClient:
    client = TableClient.from_connection_string(env["AzureWebJobsStorage"],
                                                env["JOBS_TABLE_NAME"])
    try:
        client.create_table()
    except Exception:  # noqa: BLE001 - exists already
        pass
    return client


def letter(kind: str = "twilio_permanent", job: dict[str, Any] | None = JOB, *,
           at: float | None = None, **over: Any) -> str:
    original = over.pop("original", json.dumps(job))
    args: dict[str, Any] = {"kind": kind, "reason": f"reason for {kind}", "original": original,
                            "queue_message_id": "q-" + kind,
                            "job_key": (job or {}).get("id"), "twilio_code": None,
                            "dequeue_count": 1, "at": at or time.time()}
    args.update(over)
    return deadletters.envelope(**args)


def texts(client: QueueClient) -> list[str]:
    return [m.content for m in client.peek_messages(max_messages=32)]


def row(env: dict[str, str], key: str, **fields: Any) -> None:
    table(env).upsert_entity({"PartitionKey": job_partition(key), "RowKey": key,
                              "updated_at": time.time(), **fields})
