"""A small stand-in for the Functions host, for development and tests.

It serves a v2-model app's HTTP triggers on `/<routePrefix>/<route>`, drives its queue
triggers from Azure Storage (Azurite), honouring host.json's `extensions.queues`:
`batchSize`, `newBatchThreshold`, `maxDequeueCount` (then `<queue>-poison`),
`visibilityTimeout`, `maxPollingInterval` and `messageEncoding`, runs its timer triggers
(`devhost.timers`), and writes its queue output bindings (`func.Out[str]`, or a returned
value) once the function succeeds, encoded per `messageEncoding` as the real host does.
Connections are connection strings (`<name>`, or `AzureWebJobs<name>`).
Several dev hosts may serve the same queues: queues are created idempotently, and each
timer runs in one of them at a time.
It is not the real host: `func start` is, where Azure Functions Core Tools are installed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import inspect
import json
import logging
import os
import re
import sys
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import azure.functions as func
from aiohttp import web
from azure.functions.decorators.core import BindingDirection
from azure.functions.decorators.http import HttpOutput, HttpTrigger
from azure.functions.decorators.queue import QueueOutput, QueueTrigger
from azure.functions.decorators.timer import TimerTrigger
from azure.functions.queue import QueueMessage

from devhost import timers

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


HOST_SETTING_PREFIX = "AzureFunctionsJobHost__"


def with_app_settings(host_json: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """host.json with `AzureFunctionsJobHost__a__b=value` app settings laid over it, as the
    Functions host reads them (`__` separates levels; names match case-insensitively). The
    deployment sets the queue options this way (infra/: QUEUE_BATCH_SIZE ...)."""
    merged: dict[str, Any] = json.loads(json.dumps(host_json))
    for name, value in env.items():
        if not name.startswith(HOST_SETTING_PREFIX):
            continue
        node = merged
        *path, leaf = name[len(HOST_SETTING_PREFIX):].split("__")
        for part in path:
            key = next((k for k in node if k.lower() == part.lower()), part)
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        key = next((k for k in node if k.lower() == leaf.lower()), leaf)
        node[key] = value
    return merged


def resolve(name: str, env: Mapping[str, str]) -> str:
    """`%SETTING%` references in trigger arguments, as the host resolves them."""
    def sub(m: re.Match[str]) -> str:
        if m[1] not in env:
            raise KeyError(f"trigger refers to %{m[1]}% but that setting is not set")
        return env[m[1]]
    return re.sub(r"%([^%]+)%", sub, name)


class HostError(RuntimeError):
    """The app asks for something the dev host cannot give it; the message says what to
    change."""


def connection_string(name: str, env: Mapping[str, str]) -> str:
    """A binding's `connection`, as the host looks it up: `<name>`, then `AzureWebJobs<name>`."""
    for key in (name, f"AzureWebJobs{name}"):
        if env.get(key):
            return env[key]
    if any(env.get(f"{name}__{part}") for part in ("queueServiceUri", "serviceUri",
                                                    "accountName")):
        raise HostError(
            f"connection {name!r} is identity-based ({name}__queueServiceUri ...), which the "
            f"dev host cannot use (Azurite takes no Azure identity): set {name} to a "
            "connection string locally, e.g. UseDevelopmentStorage=true")
    raise HostError(f"connection {name!r} is not set: set {name} to a connection string "
                    f"(locally, e.g. UseDevelopmentStorage=true; in Azure, "
                    f"{name}__queueServiceUri with an identity)")


T = TypeVar("T")


class Out(func.Out[T], Generic[T]):
    """An output binding's value, as the worker hands one to a function (None: unset)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[no-any-return]


# Weak keys: an id() would be reused by the next app once this one is gone.
_FUNCTIONS: weakref.WeakKeyDictionary[func.FunctionApp, list[Any]] = \
    weakref.WeakKeyDictionary()


def functions_of(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, once per app: the library refuses a second call."""
    if app not in _FUNCTIONS:
        _FUNCTIONS[app] = app.get_functions()
    return _FUNCTIONS[app]


async def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    return await asyncio.to_thread(fn, **kwargs)


def _queue_client(conn: str, queue_name: str) -> Any:
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.storage.queue.aio import QueueClient

    # Its own session, trust_env off (no per-request proxy lookup in a thread).
    # Short SDK retries: the poll loop itself outlasts outages, and a long SDK backoff
    # would only delay the resumption.
    return QueueClient.from_connection_string(
        conn, queue_name, retry_total=2, initial_backoff=1, increment_base=1,
        transport=AioHttpTransport(session=aiohttp.ClientSession(trust_env=False),
                                   session_owner=True))


class QueueOutputTarget:
    """Where a queue output binding writes: the queue is made on first use, as the host's
    binding does."""

    def __init__(self, conn: str, queue_name: str, encoding: str) -> None:
        self.queue_name = queue_name
        self.encoding = encoding
        self._conn = conn
        self._client: Any = None

    def _texts(self, value: Any) -> list[str]:
        values = value if isinstance(value, list) else [value]
        texts = []
        for v in values:
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            if not isinstance(v, str):
                raise TypeError(f"queue output {self.queue_name}: a message is str or bytes "
                                f"(a list of them for several), not {type(v).__name__}")
            texts.append(base64.b64encode(v.encode("utf-8")).decode("ascii")
                         if self.encoding == "base64" else v)
        return texts

    async def put(self, value: Any) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        texts = self._texts(value)
        if self._client is None:
            self._client = _queue_client(self._conn, self.queue_name)
        for text in texts:
            try:
                await self._client.send_message(text)
            except ResourceNotFoundError:
                try:
                    await self._client.create_queue()
                except ResourceExistsError:
                    pass
                await self._client.send_message(text)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


# What the dev host runs: other triggers and bindings are refused at start, not ignored.
TRIGGERS = (HttpTrigger, QueueTrigger, TimerTrigger)
OUTPUTS = (HttpOutput, QueueOutput)


def default_state_dir() -> Path:
    """Timer locks and statuses: shared by every dev host of this user on this machine."""
    return Path(tempfile.gettempdir()) / f"devhost-{os.getuid()}" / "timers"


class DevHost:
    def __init__(self, app: func.FunctionApp, host_json: Mapping[str, Any],
                 env: Mapping[str, str], *, message_lease_seconds: float = 600.0,
                 state_dir: Path | None = None, clock: timers.Clock | None = None,
                 sleep: timers.Sleep = asyncio.sleep, timer_lock_poll_seconds: float = 5.0,
                 drain_seconds: float = 5.0) -> None:
        self.env = env
        host_json = with_app_settings(host_json, env)
        self.drain_seconds = drain_seconds
        # The real host keeps a fetched message invisible while it runs (10 minutes,
        # renewed); here a fixed lease, longer than any attempt (shared.ledger).
        self.message_lease_seconds = message_lease_seconds
        self.route_prefix = host_json.get("extensions", {}).get("http", {}).get(
            "routePrefix", "api")
        self.queue_options = QueueOptions.from_host_json(host_json)
        self.functions = functions_of(app)
        self._check_supported()
        self.http = [f for f in self.functions if isinstance(f.get_trigger(), HttpTrigger)]
        self.queues = [f for f in self.functions if isinstance(f.get_trigger(), QueueTrigger)]
        self.timers = {f.get_function_name(): (f, self._timer_of(f)) for f in self.functions
                       if isinstance(f.get_trigger(), TimerTrigger)}
        self.outputs = {f.get_function_name(): self._outputs_of(f) for f in self.functions}
        for f in self.queues:  # every connection resolves before anything starts
            connection_string(f.get_trigger().connection or "AzureWebJobsStorage", env)
        self.state = timers.StateFiles(state_dir or default_state_dir(),
                                       env.get("AzureWebJobsStorage", "no storage"))
        # Injectable, so a test runs a day of schedule in milliseconds.
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.sleep = sleep
        self.timer_lock_poll_seconds = timer_lock_poll_seconds
        self.stats = {"invocations": 0, "failures": 0, "poisoned": 0}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    def _check_supported(self) -> None:
        for fn in self.functions:
            name = fn.get_function_name()
            if not isinstance(fn.get_trigger(), TRIGGERS):
                raise HostError(f"function {name}: the dev host does not run "
                                f"{fn.get_trigger().type} triggers (it runs HTTP, queue and "
                                "timer triggers): run it with `func start`")
            for b in fn.get_bindings():
                if b.direction == BindingDirection.OUT and \
                        not isinstance(b, OUTPUTS):
                    raise HostError(f"function {name}: the dev host does not write {b.type} "
                                    "output bindings (it writes queue outputs): run it with "
                                    "`func start`")

    def _timer_of(self, fn: Any) -> timers.TimerFunction:
        t = fn.get_trigger()
        name = fn.get_function_name()
        try:
            cron = timers.Cron.parse(resolve(t.schedule, self.env))
        except (KeyError, timers.ScheduleError) as exc:
            raise HostError(f"timer {name}: schedule {t.schedule!r}: "
                            f"{exc.args[0] if exc.args else exc}") from None
        monitor = t.use_monitor if t.use_monitor is not None else \
            cron.monitored_by_default(dt.datetime.now(dt.UTC))
        return timers.TimerFunction(name, cron, bool(t.run_on_startup), monitor)

    def _outputs_of(self, fn: Any) -> dict[str, QueueOutputTarget]:
        out = {}
        for b in fn.get_bindings():
            if isinstance(b, QueueOutput):
                conn = connection_string(b.connection or "AzureWebJobsStorage", self.env)
                try:
                    queue = resolve(b.queue_name, self.env)
                except KeyError as exc:
                    raise HostError(f"function {fn.get_function_name()}: queue output "
                                    f"{b.name}: {exc.args[0]}") from None
                out[b.name] = QueueOutputTarget(conn, queue, self.queue_options.message_encoding)
        return out

    async def _invoke(self, fn: Any, trigger_value: Any) -> Any:
        """Call the function with its trigger value and its outputs; write the outputs once
        it has succeeded (a failed invocation writes nothing)."""
        outputs = self.outputs[fn.get_function_name()]
        outs: dict[str, Out[Any]] = {n: Out() for n in outputs if n != "$return"}
        result = await _call(fn.get_user_function(),
                             {fn.get_trigger().name: trigger_value, **outs})
        for name, target in outputs.items():
            value = result if name == "$return" else outs[name].get()
            if value is not None:
                await target.put(value)
        return result

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
        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            req = func.HttpRequest(method=request.method, url=str(request.url),
                                   headers=dict(request.headers),
                                   params=dict(request.query), body=body,
                                   route_params=dict(request.match_info))
            self.stats["invocations"] += 1
            try:
                res = await self._invoke(fn, req)
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
        return _queue_client(connection_string(connection, self.env), queue_name)

    async def _poll(self, fn: Any) -> None:
        """Fetch and run messages until stopped. Like the real host, it outlives storage
        outages: it logs, backs off (up to `maxPollingInterval`, at least 5 s) and
        resumes, saying so. Stopped, it drains as the real host does on scale-in: what runs
        gets `drain_seconds` to finish; what is cut off has its message made visible again,
        so a restart picks it up at once instead of after the lease."""
        from azure.core.exceptions import ResourceExistsError

        trigger = fn.get_trigger()
        name = resolve(trigger.queue_name, self.env)
        client = self._queue_client(trigger.connection or "AzureWebJobsStorage", name)
        poison = self._queue_client(trigger.connection or "AzureWebJobsStorage", f"{name}-poison")
        opts = self.queue_options
        in_flight: dict[asyncio.Task[None], Any] = {}  # task -> its message
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
                        await asyncio.wait(list(in_flight),
                                           return_when=asyncio.FIRST_COMPLETED)
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
                    task = asyncio.create_task(self._run_one(fn, client, poison, m))
                    in_flight[task] = m
                    task.add_done_callback(lambda t: in_flight.pop(t, None))
        finally:
            await self._drain(name, client, in_flight)
            await client.close()
            await poison.close()

    async def _drain(self, name: str, client: Any, in_flight: dict[asyncio.Task[None], Any]
                     ) -> None:
        if in_flight:
            await asyncio.wait(list(in_flight), timeout=self.drain_seconds)
        cut = list(in_flight.items())
        for task, _ in cut:
            task.cancel()
        await asyncio.gather(*(t for t, _ in cut), return_exceptions=True)
        for _, m in cut:
            try:
                await client.update_message(m.id, m.pop_receipt, visibility_timeout=0)
            except Exception as exc:  # noqa: BLE001 - it comes back when its lease ends
                log.warning("message %s: stopped mid-run and not released (%s); it comes "
                            "back in %d s", m.id, type(exc).__name__,
                            self.message_lease_seconds)
        if cut:
            log.warning("queue %s: %d message(s) stopped mid-run, visible again for the next "
                        "start (each looks at its ledger row, and at Twilio if need be)", name,
                        len(cut))

    async def _run_one(self, fn: Any, client: Any, poison: Any, m: Any) -> None:
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
            await self._invoke(fn, QueueMessage(  # type: ignore[no-untyped-call]
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
        for fn, timer in self.timers.values():
            self._tasks.append(asyncio.create_task(self._timer(fn, timer)))

    async def _timer(self, fn: Any, timer: timers.TimerFunction) -> None:
        async def invoke(request: Any) -> None:
            self.stats["invocations"] += 1
            try:
                await self._invoke(fn, request)
            except Exception:
                self.stats["failures"] += 1
                raise

        try:
            await timers.run_timer(timer, invoke, self.state, clock=self.clock,
                                   sleep=self.sleep,
                                   lock_poll_seconds=self.timer_lock_poll_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # a dead timer must say so: HTTP and queues go on
            log.exception("timer %s stopped", timer.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        for outputs in self.outputs.values():
            for target in outputs.values():
                await target.close()
        runtime = sys.modules.get("shared.runtime")  # this project's app, if it ran here
        if runtime is not None:
            await runtime.shutdown()
