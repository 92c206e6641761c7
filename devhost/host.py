"""A small stand-in for the Functions host, for development and tests.

It imports `function_app`, serves the HTTP triggers on `/<routePrefix>/<route>` and drives
the queue triggers from Azure Storage (Azurite), honouring host.json's `extensions.queues`:
`batchSize`, `newBatchThreshold`, `maxDequeueCount` (then `<queue>-poison`),
`visibilityTimeout`, `maxPollingInterval` and `messageEncoding`. It is not the real host:
`func start` is, where Azure Functions Core Tools are installed.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.decorators.http import HttpTrigger
from azure.functions.decorators.queue import QueueTrigger
from azure.functions.queue import QueueMessage

log = logging.getLogger("devhost")


def _timespan(value: str | None, default: float) -> float:
    """host.json's hh:mm:ss to seconds."""
    if not value:
        return default
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host: Mapping[str, Any]) -> QueueOptions:
        q = host.get("extensions", {}).get("queues", {})
        batch = int(q.get("batchSize", 16))
        return cls(batch_size=batch,
                   new_batch_threshold=int(q.get("newBatchThreshold", batch // 2)),
                   max_dequeue_count=int(q.get("maxDequeueCount", 5)),
                   visibility_timeout=_timespan(q.get("visibilityTimeout"), 0.0),
                   max_polling_interval=_timespan(q.get("maxPollingInterval"), 60.0),
                   message_encoding=str(q.get("messageEncoding", "base64")).lower())


def resolve(name: str, env: Mapping[str, str]) -> str:
    """`%SETTING%` references in trigger arguments, as the host resolves them."""
    def sub(m: re.Match[str]) -> str:
        if m[1] not in env:
            raise KeyError(f"trigger refers to %{m[1]}% but that setting is not set")
        return env[m[1]]
    return re.sub(r"%([^%]+)%", sub, name)


_FUNCTIONS: dict[int, list[Any]] = {}


def functions_of(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, once per app: the library refuses a second call."""
    if id(app) not in _FUNCTIONS:
        _FUNCTIONS[id(app)] = app.get_functions()
    return _FUNCTIONS[id(app)]


async def _call(fn: Any, arg: Any) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(arg)
    return await asyncio.to_thread(fn, arg)


class DevHost:
    def __init__(self, app: func.FunctionApp, host_json: Mapping[str, Any],
                 env: Mapping[str, str], *, message_lease_seconds: float = 600.0) -> None:
        self.env = env
        # The real host keeps a fetched message invisible while it runs (10 minutes,
        # renewed); here a fixed lease, longer than any attempt (shared.ledger).
        self.message_lease_seconds = message_lease_seconds
        self.route_prefix = host_json.get("extensions", {}).get("http", {}).get(
            "routePrefix", "api")
        self.queue_options = QueueOptions.from_host_json(host_json)
        self.functions = functions_of(app)
        self.http = [f for f in self.functions if isinstance(f.get_trigger(), HttpTrigger)]
        self.queues = [f for f in self.functions if isinstance(f.get_trigger(), QueueTrigger)]
        self.stats = {"invocations": 0, "failures": 0, "poisoned": 0}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    # -- HTTP ------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        for fn in self.http:
            trigger = fn.get_trigger()
            path = f"/{self.route_prefix}/{trigger.route}" if self.route_prefix else \
                f"/{trigger.route}"
            methods = [str(getattr(m, "value", m)) for m in (trigger.methods or ["GET", "POST"])]
            for method in methods:
                app.router.add_route(method, path, self._http_handler(fn))
        return app

    def _http_handler(self, fn: Any) -> Any:
        user_fn = fn.get_user_function()

        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            req = func.HttpRequest(method=request.method, url=str(request.url),
                                   headers=dict(request.headers),
                                   params=dict(request.query), body=body,
                                   route_params=dict(request.match_info))
            self.stats["invocations"] += 1
            try:
                res = await _call(user_fn, req)
            except Exception:
                self.stats["failures"] += 1
                log.exception("function %s failed", fn.get_function_name())
                return web.Response(status=500, text="Internal Server Error\n")
            headers = {k: v for k, v in res.headers.items() if k.lower() != "content-type"}
            content_type = res.mimetype or "text/plain"
            if res.charset:
                content_type += f"; charset={res.charset}"
            headers["Content-Type"] = content_type
            return web.Response(status=res.status_code, body=res.get_body(), headers=headers)

        return handler

    # -- queues ----------------------------------------------------------------------------

    def _queue_client(self, connection: str, queue_name: str) -> Any:
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport
        from azure.storage.queue.aio import QueueClient

        conn = self.env.get(connection)
        if not conn:
            raise KeyError(f"queue trigger connection {connection!r} is not set")
        # Its own session, trust_env off (no per-request proxy lookup in a thread).
        # Short SDK retries: the poll loop itself outlasts outages, and a long SDK backoff
        # would only delay the resumption.
        return QueueClient.from_connection_string(
            conn, queue_name, retry_total=2, initial_backoff=1, increment_base=1,
            transport=AioHttpTransport(session=aiohttp.ClientSession(trust_env=False),
                                       session_owner=True))

    async def _poll(self, fn: Any) -> None:
        """Fetch and run messages until stopped. Like the real host, it outlives storage
        outages: it logs, backs off (up to `maxPollingInterval`, at least 5 s) and
        resumes, saying so."""
        from azure.core.exceptions import ResourceExistsError

        trigger = fn.get_trigger()
        name = resolve(trigger.queue_name, self.env)
        client = self._queue_client(trigger.connection or "AzureWebJobsStorage", name)
        poison = self._queue_client(trigger.connection or "AzureWebJobsStorage", f"{name}-poison")
        opts = self.queue_options
        user_fn = fn.get_user_function()
        in_flight: set[asyncio.Task[None]] = set()
        idle = 0.1
        failing_since: float | None = None
        backoff = 0.5
        ready = False
        try:
            while True:
                try:
                    if not ready:
                        for c in (client, poison):
                            try:
                                await c.create_queue()
                            except ResourceExistsError:
                                pass
                        ready = True
                    if len(in_flight) > opts.new_batch_threshold:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    async with asyncio.timeout(30):
                        # No SDK retries here: this loop backs off itself, and says so.
                        messages = [m async for m in client.receive_messages(
                            messages_per_page=opts.batch_size, max_messages=opts.batch_size,
                            visibility_timeout=int(self.message_lease_seconds),
                            retry_total=0)]
                except Exception as exc:  # noqa: BLE001 - storage down: keep polling
                    now = asyncio.get_running_loop().time()
                    if failing_since is None:
                        failing_since = now
                        log.warning("queue %s: cannot fetch messages (%s: %s); retrying",
                                    name, type(exc).__name__, str(exc)[:200])
                    await asyncio.sleep(backoff)
                    backoff = min(max(5.0, opts.max_polling_interval), backoff * 2)
                    continue
                if failing_since is not None:
                    log.warning("queue %s: fetching again after %.0f s", name,
                                asyncio.get_running_loop().time() - failing_since)
                    failing_since, backoff = None, 0.5
                if not messages:
                    await asyncio.sleep(idle)
                    idle = min(opts.max_polling_interval, idle * 2)
                    continue
                idle = 0.1
                for m in messages:
                    task = asyncio.create_task(self._run_one(user_fn, fn, client, poison, m))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
        finally:
            for task in in_flight:
                task.cancel()
            await client.close()
            await poison.close()

    async def _run_one(self, user_fn: Any, fn: Any, client: Any, poison: Any, m: Any) -> None:
        opts = self.queue_options
        content = m.content or ""
        try:
            body = base64.b64decode(content, validate=True) \
                if opts.message_encoding == "base64" else content.encode("utf-8")
        except ValueError:
            body = None
        self.stats["invocations"] += 1
        try:
            if body is None:
                raise ValueError("messageEncoding is base64 but the message is not base64")
            await _call(user_fn, QueueMessage(
                id=m.id, body=body, pop_receipt=m.pop_receipt, dequeue_count=m.dequeue_count,
                insertion_time=m.inserted_on, expiration_time=m.expires_on))
        except Exception as exc:  # noqa: BLE001 - the host's contract: failure = retry/poison
            self.stats["failures"] += 1
            log.warning("function %s failed on message %s (dequeue %s): %s: %s",
                        fn.get_function_name(), m.id, m.dequeue_count, type(exc).__name__, exc)
            try:
                if m.dequeue_count >= opts.max_dequeue_count:
                    await poison.send_message(content)
                    await client.delete_message(m.id, m.pop_receipt)
                    self.stats["poisoned"] += 1
                    log.error("message %s moved to %s after %d attempts", m.id,
                              poison.queue_name, m.dequeue_count)
                else:
                    await client.update_message(m.id, m.pop_receipt,
                                                visibility_timeout=int(opts.visibility_timeout))
            except Exception as exc2:  # noqa: BLE001 - it comes back when its lease ends
                log.warning("message %s: could not be released (%s); it comes back in %d s",
                            m.id, type(exc2).__name__, self.message_lease_seconds)
            return
        try:
            await client.delete_message(m.id, m.pop_receipt)
        except Exception as exc:  # noqa: BLE001 - delivered again later; the ledger copes
            log.warning("message %s: done but not deleted (%s); it comes back in %d s",
                        m.id, type(exc).__name__, self.message_lease_seconds)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 7071) -> None:
        self._runner = web.AppRunner(self.web_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        for fn in self.queues:
            self._tasks.append(asyncio.create_task(self._poll(fn)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        from shared import runtime

        await runtime.shutdown()
