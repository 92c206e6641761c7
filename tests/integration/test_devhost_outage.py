"""The dev host outlives a storage outage, as the Functions host does: its queue poller
logs, backs off and resumes (it used to die silently while HTTP kept answering)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient

from devhost import services
from devhost.host import DevHost


def test_the_poller_resumes_after_storage_comes_back(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="devhost")
    ports = {name: services.free_port() for name in ("blob", "queue", "table")}
    azurite = services.start_azurite(tmp_path, location=tmp_path / "data", **ports)
    conn = azurite.env["AzureWebJobsStorage"]
    seen: list[bytes] = []
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="outage", connection="AzureWebJobsStorage")
    async def work(msg: func.QueueMessage) -> None:
        seen.append(msg.get_body())

    async def until(count: int, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while len(seen) < count:
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.05)

    async def send(text: str) -> None:
        async with QueueClient.from_connection_string(conn, "outage") as q:
            try:
                await q.create_queue()  # the poller may not have made it yet
            except ResourceExistsError:
                pass
            await q.send_message(text)

    async def go() -> None:
        nonlocal azurite
        dev = DevHost(app, {"extensions": {"queues": {"messageEncoding": "none",
                                                      "maxPollingInterval": "00:00:01"}}},
                      {"AzureWebJobsStorage": conn})
        await dev.start("127.0.0.1", services.free_port())
        try:
            await send("before")
            await until(1, 20)
            azurite.stop()
            await asyncio.sleep(3)  # the poller meets a dead port for a while
            azurite = await asyncio.to_thread(services.start_azurite, tmp_path,
                                              location=tmp_path / "data", **ports)
            await send("after")
            await until(2, 30)
        finally:
            await dev.stop()

    try:
        asyncio.run(go())
    finally:
        azurite.stop()
    assert seen == [b"before", b"after"]
    messages = [r.getMessage() for r in caplog.records if r.name == "devhost"]
    assert any(m.startswith("queue outage: cannot fetch messages") for m in messages)
    assert any(m.startswith("queue outage: fetching again after") for m in messages)
