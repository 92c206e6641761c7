"""The dev host honours host.json's queue settings and writes queue output bindings, like the
Functions host, and refuses at start what it cannot run."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue.aio import QueueClient

from devhost.host import DevHost, HostError, QueueOptions, resolve, with_app_settings
from devhost.services import free_port


def tiny_app(behaviour: Any) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="%Q%", connection="AzureWebJobsStorage")
    async def work(msg: func.QueueMessage) -> None:
        await behaviour(msg)

    return app


def host_json(**queues: Any) -> dict[str, Any]:
    return {"version": "2.0", "extensions": {"queues": queues}}


async def run_host(app: func.FunctionApp, hj: dict[str, Any], conn: str, qname: str,
                   messages: list[str], until: Any, timeout: float = 20) -> DevHost:
    dev = DevHost(app, hj, {"AzureWebJobsStorage": conn, "Q": qname})
    client = QueueClient.from_connection_string(conn, qname)
    async with client:
        await client.create_queue()
        for m in messages:
            await client.send_message(m)
    await dev.start("127.0.0.1", free_port())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await until(dev):
            assert asyncio.get_running_loop().time() < deadline, dev.stats
            await asyncio.sleep(0.05)
    finally:
        await dev.stop()
    return dev


def test_options_read_from_host_json() -> None:
    opts = QueueOptions.from_host_json(host_json(batchSize=4, maxDequeueCount=2,
                                                 visibilityTimeout="00:00:01",
                                                 maxPollingInterval="00:00:02",
                                                 messageEncoding="none"))
    assert opts == QueueOptions(4, 2, 2, 1.0, 2.0, "none")
    assert QueueOptions.from_host_json({}) == QueueOptions()
    assert resolve("%A%-x", {"A": "q"}) == "q-x"


def test_failures_retry_then_poison(storage_env: dict[str, str]) -> None:
    seen: list[int] = []

    async def fail(msg: func.QueueMessage) -> None:
        seen.append(msg.dequeue_count or 0)
        raise RuntimeError("boom")

    conn, qname = storage_env["AzureWebJobsStorage"], storage_env["OUTBOUND_QUEUE_NAME"]

    async def go() -> list[str]:
        async def poisoned(dev: DevHost) -> bool:
            return dev.stats["poisoned"] == 1
        await run_host(tiny_app(fail), host_json(maxDequeueCount=3, messageEncoding="none",
                                                 visibilityTimeout="00:00:00",
                                                 maxPollingInterval="00:00:00.2"),
                       conn, qname, ["job-1"], poisoned)
        poison = QueueClient.from_connection_string(conn, f"{qname}-poison")
        async with poison:
            return [m.content async for m in poison.receive_messages()]

    assert asyncio.run(go()) == ["job-1"]
    assert seen == [1, 2, 3]


def test_base64_encoding_and_concurrency_limit(storage_env: dict[str, str]) -> None:
    state = {"now": 0, "peak": 0, "bodies": []}

    async def slow(msg: func.QueueMessage) -> None:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        state["bodies"].append(msg.get_body())
        await asyncio.sleep(0.2)
        state["now"] -= 1

    conn, qname = storage_env["AzureWebJobsStorage"], storage_env["OUTBOUND_QUEUE_NAME"]
    texts = [base64.b64encode(f"m{i}".encode()).decode() for i in range(20)]

    async def done(dev: DevHost) -> bool:
        return len(state["bodies"]) == 20 and state["now"] == 0

    asyncio.run(run_host(tiny_app(slow), host_json(batchSize=4, newBatchThreshold=2,
                                                   maxPollingInterval="00:00:00.2"),
                         conn, qname, texts, done))
    assert sorted(state["bodies"]) == sorted(f"m{i}".encode() for i in range(20))
    assert 4 <= state["peak"] <= 4 + 2


def test_app_settings_override_host_json_as_the_functions_host_reads_them() -> None:
    hj = host_json(batchSize=16, newBatchThreshold=8, visibilityTimeout="00:00:30")
    env = {"AzureFunctionsJobHost__extensions__queues__batchSize": "4",
           "AzureFunctionsJobHost__Extensions__Queues__NEWBATCHTHRESHOLD": "1",
           "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
           "AzureFunctionsJobHost__extensions__http__routePrefix": "hooks",
           "AzureFunctionsJobHost__functionTimeout": "00:01:00", "OTHER": "x"}
    merged = with_app_settings(hj, env)
    assert merged == {"version": "2.0", "functionTimeout": "00:01:00", "extensions": {
        "queues": {"batchSize": "4", "newBatchThreshold": "1", "visibilityTimeout": "00:00:30",
                   "maxDequeueCount": "2"},
        "http": {"routePrefix": "hooks"}}}
    assert hj["extensions"]["queues"]["batchSize"] == 16  # the file's copy is untouched
    opts = QueueOptions.from_host_json(merged)
    assert (opts.batch_size, opts.new_batch_threshold, opts.max_dequeue_count) == (4, 1, 2)


def test_stopped_mid_run_its_messages_are_visible_again_at_once(
        storage_env: dict[str, str]) -> None:
    """Ctrl-C while a message runs: after the drain time it is cut off, and its message is
    released for the next start, not hidden for the 10-minute lease."""
    started = asyncio.Event()

    async def hang(msg: func.QueueMessage) -> None:
        started.set()
        await asyncio.sleep(3600)

    conn, qname = storage_env["AzureWebJobsStorage"], storage_env["OUTBOUND_QUEUE_NAME"]

    async def go() -> list[str]:
        dev = DevHost(tiny_app(hang), host_json(messageEncoding="none",
                                                maxPollingInterval="00:00:00.2"),
                      {"AzureWebJobsStorage": conn, "Q": qname}, drain_seconds=0.2)
        client = QueueClient.from_connection_string(conn, qname)
        async with client:
            await client.create_queue()
            await client.send_message("job-1")
            await dev.start("127.0.0.1", free_port())
            await asyncio.wait_for(started.wait(), 10)
            await dev.stop()
            return [m.content async for m in client.receive_messages()]

    assert asyncio.run(go()) == ["job-1"]


# -- queue output bindings ----------------------------------------------------------------

def producer_app() -> func.FunctionApp:
    app = func.FunctionApp()

    @app.route(route="put", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    @app.queue_output(arg_name="out", queue_name="%Q%", connection="Backend")
    def put(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
        body = req.get_body().decode()
        if body == "fail":
            out.set("never written")
            raise RuntimeError("boom")
        if body != "nothing":
            out.set(body.split("|") if "|" in body else body)  # type: ignore[arg-type]
        return func.HttpResponse("ok")

    return app


async def post_to(dev: DevHost, port: int, bodies: list[str]) -> list[int]:
    import aiohttp

    await dev.start("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for body in bodies:
                async with session.post(f"http://127.0.0.1:{port}/api/put", data=body) as res:
                    statuses.append(res.status)
            return statuses
    finally:
        await dev.stop()


async def contents(conn: str, qname: str) -> list[str]:
    async with QueueClient.from_connection_string(conn, qname) as q:
        return [m.content async for m in q.receive_messages(max_messages=32)]


def test_queue_output_writes_after_success_encoded_as_the_host_is_told(
        storage_env: dict[str, str]) -> None:
    conn = storage_env["AzureWebJobsStorage"]
    for encoding in ("base64", "none"):
        qname = f"{storage_env['OUTBOUND_QUEUE_NAME']}-{encoding}"  # made by the binding
        dev = DevHost(producer_app(), host_json(messageEncoding=encoding),
                      {"Backend": conn, "Q": qname})
        statuses = asyncio.run(post_to(dev, free_port(), ['{"a": 1}', "fail", "nothing",
                                                          "x|y"]))
        assert statuses == [200, 500, 200, 200]
        written = asyncio.run(contents(conn, qname))
        expected = ['{"a": 1}', "x", "y"]
        if encoding == "base64":
            expected = [base64.b64encode(e.encode()).decode() for e in expected]
        assert sorted(written) == sorted(expected), encoding


def test_a_connection_the_dev_host_cannot_use_stops_it_before_it_starts() -> None:
    for env, message in [
        ({"Q": "q"}, "connection 'Backend' is not set: set Backend to a connection string "
         "(locally, e.g. UseDevelopmentStorage=true; in Azure, Backend__queueServiceUri with "
         "an identity)"),
        ({"Q": "q", "Backend__queueServiceUri": "https://acct.queue.core.windows.net",
          "Backend__credential": "managedidentity"},
         "connection 'Backend' is identity-based (Backend__queueServiceUri ...), which the dev "
         "host cannot use (Azurite takes no Azure identity): set Backend to a connection "
         "string locally, e.g. UseDevelopmentStorage=true"),
        ({"Backend": "UseDevelopmentStorage=true"}, "function put: queue output out: trigger "
         "refers to %Q% but that setting is not set"),
    ]:
        with pytest.raises(HostError) as caught:
            DevHost(producer_app(), host_json(), env)
        assert str(caught.value) == message


def test_a_trigger_the_dev_host_does_not_run_is_refused_by_name() -> None:
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="blob", path="in/{name}", connection="AzureWebJobsStorage")
    def on_blob(blob: func.InputStream) -> None:
        pass

    with pytest.raises(HostError) as caught:
        DevHost(app, host_json(), {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert str(caught.value) == ("function on_blob: the dev host does not run blobTrigger "
                                 "triggers (it runs HTTP, queue and timer triggers): run it "
                                 "with `func start`")
