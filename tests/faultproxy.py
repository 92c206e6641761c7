"""An HTTP proxy on loopback that loses, delays or cuts single requests on their way to a
real service (Azurite, a Twilio double), so a test can reproduce exactly the faults a
network gives: a request that never arrives, an answer that never comes back after the
server acted on it, an answer that comes too late.

    with FaultProxy(upstream="http://127.0.0.1:10002") as proxy:
        proxy.add(Fault("lose_answer", method="POST", path=r"/jobs\\w+$", times=1))

Rules are tried in order; each fires for `times` matching requests (`None`: always).
It runs its own event loop in a thread, so both sync and async tests can drive it.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from aiohttp import web

ACTIONS = ("lose_request", "lose_answer", "delay", "fail", "fail_after")
_AUTO = ("Content-Type", "Accept-Encoding", "User-Agent")
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Fault:
    """`lose_request`: cut the connection without forwarding. `lose_answer`: forward, let
    the server act, cut the connection instead of answering. `delay`: wait `seconds`
    before forwarding. `fail`: answer `status` without forwarding. `fail_after`: forward, let
    the server act, answer `status` instead (a gateway's 500 after the service did the work)."""

    action: str
    method: str | None = None
    path: str = ""
    body: str = ""
    times: int | None = 1
    seconds: float = 0.0
    status: int = 503
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; one of {ACTIONS}")

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return ((self.method is None or self.method == method)
                and re.search(self.path, path) is not None
                and (not self.body or re.search(self.body.encode(), body) is not None))


@dataclass
class Seen:
    method: str
    path: str
    action: str


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def fired(self, action: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.action != "pass"
                       and (action is None or s.action == action))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, trust_env=False,
            connector=aiohttp.TCPConnector(keepalive_timeout=2))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Idle keep-alive connections closed after 5 s, as Azurite (Node) does.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _pick(self, method: str, path: str, body: bytes) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, body):
                    fault.fired += 1
                    self.seen.append(Seen(method, path, fault.action))
                    return fault
            self.seen.append(Seen(method, path, "pass"))
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self._pick(request.method, request.raw_path, body)
        if fault is not None and fault.action == "lose_request":
            return _cut(request)
        if fault is not None and fault.action == "fail":
            return web.Response(status=fault.status, text="injected fault")
        if fault is not None and fault.action == "delay":
            await asyncio.sleep(fault.seconds)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        assert self._session is not None
        try:
            # The raw path: storage signs the request with the path as the client encoded it.
            url = yarl.URL(self.upstream + request.raw_path, encoded=True)
            async with self._session.request(request.method, url,
                                             headers=headers, data=body or None,
                                             allow_redirects=False,
                                             # Storage signs Content-Type: add none.
                                             skip_auto_headers=_AUTO) as res:
                payload = await res.read()
                answer = web.Response(status=res.status, body=payload, headers={
                    k: v for k, v in res.headers.items() if k.lower() not in _HOP})
        except (aiohttp.ClientError, OSError):
            return _cut(request)  # the service is down or paused past our patience
        if fault is not None and fault.action == "lose_answer":
            return _cut(request)
        if fault is not None and fault.action == "fail_after":
            return web.Response(status=fault.status, text="injected fault after the work")
        return answer


def _cut(request: web.Request) -> web.StreamResponse:
    """Close the client's connection: it sees a reset or an empty answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response()  # never written: the connection is gone


@dataclass
class Proxies:
    """One proxy per endpoint of a service, e.g. Azurite's queue and table endpoints."""

    by_name: dict[str, FaultProxy] = field(default_factory=dict)

    def __enter__(self) -> Proxies:
        for proxy in self.by_name.values():
            proxy.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for proxy in self.by_name.values():
            proxy.__exit__(*exc)
