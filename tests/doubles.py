"""Loopback doubles for the services the app talks to, each a real HTTP(S) server in a
thread: a scriptable Twilio REST double (faults, latency, or forwarding to Prism), an HTTPS
Key Vault, and an App Service managed-identity token endpoint."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Reply:
    """A scripted answer. `action`: "reply", "sleep" (never answer in time), "reset" (cut
    the connection), or "accept_then_reset" / "accept_then_sleep" (create the resource,
    then cut the connection or answer after `delay`: Twilio acted, the caller can't know),
    or "accept_then_garble" (create it, then answer 201 with a gateway's HTML page)."""

    status: int = 201
    body: dict[str, Any] | None = None
    action: str = "reply"
    delay: float = 0.0
    headers: dict[str, str] | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    allow_reuse_address = True

    def __init__(self, owner: LoopbackServer, tls: ssl.SSLContext | None, port: int = 0
                 ) -> None:
        super().__init__(("127.0.0.1", port), owner.handler_class())
        self.owner = owner
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeouts are part of the fault plans) is not an error

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # Headers and body go out in two writes: without NODELAY, Nagle + the client's
        # delayed ACK add ~40 ms to every response.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner.lock:
            self.owner.connections += 1
        return conn, addr


class LoopbackServer:
    """Base: start/stop, a lock, request and connection counters."""

    scheme = "http"

    def __init__(self, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.connections = 0
        self._server = _Server(self, tls, port)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str],
                                                                                bytes] | None:
        raise NotImplementedError

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                rec = Recorded(self.command, self.path, dict(self.headers.items()),
                               self.rfile.read(length))
                with owner.lock:
                    owner.requests.append(rec)
                answer = owner.handle(rec, self)
                if answer is None:  # the connection was reset
                    self.close_connection = True
                    return
                status, headers, body = answer
                rec.status = status
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        return Handler


def _json(status: int, doc: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()


def reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close with RST instead of FIN: the client sees a connection reset."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


class TwilioDouble(LoopbackServer):
    """Twilio's REST API on loopback: creates messages and calls, and lists them (filtered
    by To and From, newest first) as Twilio does. Answers from `script` (one `Reply` per
    create, in order), else creates; with `upstream`, unscripted requests go on to it
    (Prism). With `journal`, every resource created is appended to that file and read back
    on start, so a double that is killed and started again keeps its data."""

    def __init__(self, *, latency: float = 0.0, upstream: str | None = None,
                 journal: str | None = None, port: int = 0, max_in_flight: int = 0,
                 retry_after: str | None = "1") -> None:
        super().__init__(port=port)
        self.script: list[Reply] = []
        self.latency = latency
        # Twilio's account concurrency limit: beyond `max_in_flight` requests at once, 429
        # with error 20429 (and `Retry-After` when set), the request not processed.
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.in_flight = 0
        self.peak_in_flight = 0
        self.throttled = 0
        self.upstream = upstream
        self.auth_token: str | None = None  # when set, other tokens get Twilio's 401
        # Replies per recipient (`To`), used first: fault plans that survive concurrency.
        self.by_to: dict[str, list[Reply]] = {}
        self.journal = journal
        self.created: list[dict[str, Any]] = []  # resources, in creation order
        if journal and os.path.exists(journal):
            with open(journal, encoding="utf-8") as f:
                self.created = [json.loads(line) for line in f if line.strip()]

    def sent(self) -> list[Recorded]:
        """Create requests that succeeded."""
        return [r for r in self.creates() if 200 <= r.status < 300]

    def _authorised(self, req: Recorded) -> bool:
        if self.auth_token is None:
            return True
        import base64

        auth = req.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        return base64.b64decode(auth[6:]).decode().partition(":")[2] == self.auth_token

    def creates(self, kind: str = "") -> list[Recorded]:
        """Create requests seen (`Messages` or `Calls`), faults included."""
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and
                    r.path.endswith(f"/{kind}.json" if kind else ".json")]

    def handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> Any:
        if not self.max_in_flight:
            return self._handle(req, handler)
        with self.lock:
            if self.in_flight >= self.max_in_flight:
                self.throttled += 1
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return _json(429, {"code": 20429, "message": "Too Many Requests",
                                   "more_info": "https://www.twilio.com/docs/errors/20429",
                                   "status": 429}, **headers)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return self._handle(req, handler)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> Any:
        path = urlsplit(req.path).path
        if req.method == "GET" and path.endswith((".json",)) and not self.upstream:
            if not self._authorised(req):
                return _json(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return _json(200, self._list(req))
        with self.lock:
            to = req.form.get("To", [""])[0] if req.method == "POST" else ""
            planned = self.by_to.get(to)
            if planned:
                reply = planned.pop(0)
            else:
                reply = self.script.pop(0) if self.script and req.method == "POST" else None
        if self.latency:
            time.sleep(self.latency)
        if not self._authorised(req):
            return _json(401, {"code": 20003, "message": "Authenticate", "status": 401})
        if reply is None and self.upstream:
            return self._forward(req)
        reply = reply or Reply()
        if reply.action == "sleep":
            time.sleep(reply.delay)
            return _json(503, {"message": "too late"})
        if reply.action == "reset":
            reset_connection(handler)
            return None
        if reply.status >= 400:
            return _json(reply.status, reply.body or {"code": 20500, "message": "error",
                                                      "status": reply.status},
                         **(reply.headers or {}))
        resource = reply.body or self._create(req)
        # Accepted, then the answer is lost or comes too late: Twilio has the resource.
        if reply.action == "accept_then_reset":
            reset_connection(handler)
            return None
        if reply.action == "accept_then_sleep":
            time.sleep(reply.delay)
        if reply.action == "accept_then_garble":
            return 201, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"
        return _json(reply.status, resource)

    def _create(self, req: Recorded) -> dict[str, Any]:
        kind = "SM" if req.path.endswith("/Messages.json") else "CA"
        form = req.form
        with self.lock:
            n = len(self.created) + 1  # unique however many requests run at once
            resource = {"sid": f"{kind}{n:032x}", "status": "queued",
                        "account_sid": req.path.split("/")[3],
                        "to": form.get("To", [""])[0], "from": form.get("From", [""])[0],
                        "body": form.get("Body", [None])[0],
                        "date_created": formatdate(time.time(), usegmt=True)}
            self.created.append(resource)
            if self.journal:
                with open(self.journal, "a", encoding="utf-8") as f:
                    f.write(json.dumps(resource) + "\n")
        return resource

    def _list(self, req: Recorded) -> dict[str, Any]:
        parts = urlsplit(req.path)
        query = parse_qs(parts.query)
        kind = "SM" if parts.path.endswith("/Messages.json") else "CA"
        with self.lock:
            items = [r for r in reversed(self.created) if r["sid"].startswith(kind)
                     and r["to"] == query.get("To", [r["to"]])[0]
                     and r["from"] == query.get("From", [r["from"]])[0]]
        size = int(query.get("PageSize", ["50"])[0])
        return {"messages" if kind == "SM" else "calls": items[:size], "page": 0,
                "page_size": size, "start": 0, "end": min(size, len(items)) - 1,
                "uri": req.path, "first_page_uri": req.path, "next_page_uri": None,
                "previous_page_uri": None}

    def _forward(self, req: Recorded) -> Any:
        fwd = urllib.request.Request(self.upstream + req.path, data=req.body or None,
                                     method=req.method, headers={
                                         k: v for k, v in req.headers.items()
                                         if k.lower() in ("authorization", "content-type",
                                                          "accept")})
        try:
            with urllib.request.urlopen(fwd, timeout=10) as res:
                return res.status, {"Content-Type": "application/json"}, res.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {"Content-Type": "application/json"}, exc.read()


class ManagedIdentityDouble(LoopbackServer):
    """App Service's managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER)."""

    header = "test-identity-header"

    def handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> Any:
        if req.headers.get("X-IDENTITY-HEADER") != self.header:
            return _json(401, {"error": "bad identity header"})
        query = parse_qs(urlsplit(req.path).query)
        return _json(200, {"access_token": "test-access-token",
                           "expires_on": str(int(time.time()) + 3600),
                           "resource": query.get("resource", [""])[0], "token_type": "Bearer"})


class SecretVersions(dict[str, str]):
    """name -> current value; setting a value adds a version, as `az keyvault secret set`
    does. `history[name]` holds [value, created epoch, enabled] per version, oldest first."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__()
        self.history: dict[str, list[list[Any]]] = {}
        for name, value in values.items():
            self.set(name, value, created=time.time() - 30 * 86400)

    def set(self, name: str, value: str, *, created: float | None = None) -> None:
        super().__setitem__(name, value)
        self.history.setdefault(name, []).append([value, created or time.time(), True])

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)


class KeyVaultDouble(LoopbackServer):
    """Key Vault's secrets API over HTTPS (get, get a version, list versions), with the
    bearer challenge the SDK expects."""

    def __init__(self, tls: ssl.SSLContext, secrets: dict[str, str]) -> None:
        super().__init__(tls)
        self.secrets = SecretVersions(secrets)
        self.faults: list[int] = []  # statuses to answer to the next authorised GETs
        self.on_get: Callable[[str], None] | None = None
        # A status to answer every version listing with: 403 is a vault whose access
        # policy grants `get` but not `list`.
        self.list_status: int | None = None

    def reads(self, name: str) -> int:
        """Reads of the secret's current value."""
        with self.lock:
            return sum(1 for r in self.requests if r.status == 200 and
                       urlsplit(r.path).path.rstrip("/") == f"/secrets/{name}")

    def handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> Any:
        if not req.headers.get("Authorization", "").startswith("Bearer "):
            return _json(401, {"error": {"code": "Unauthorized"}}, **{
                "WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/'
                                    '00000000-0000-0000-0000-000000000000", '
                                    'resource="https://vault.azure.net"'})
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault:
            return _json(fault, {"error": {"code": "Throttled" if fault == 429 else "Error",
                                           "message": "injected"}},
                         **({"Retry-After": "0"} if fault == 429 else {}))
        parts = urlsplit(req.path).path.strip("/").split("/")  # secrets/<name>[/<version>]
        name = parts[1] if len(parts) > 1 else ""
        history = self.secrets.history.get(name)
        if not history:
            return _json(404, {"error": {"code": "SecretNotFound", "message": name}})
        if parts[2:] == ["versions"] and self.list_status:
            return _json(self.list_status, {"error": {
                "code": "Forbidden", "message": "The user, group or application does not "
                "have secrets list permission on key vault.", "innererror": {
                    "code": "AccessDenied"}}})
        if parts[2:] == ["versions"]:
            return _json(200, {"value": [self._item(name, i)
                                         for i in range(len(history))], "nextLink": None})
        index = len(history) - 1 if len(parts) == 2 else int(parts[2], 16)
        return _json(200, {"value": history[index][0], **self._item(name, index)})

    def _item(self, name: str, index: int) -> dict[str, Any]:
        _, created, enabled = self.secrets.history[name][index]
        return {"id": f"{self.url}/secrets/{name}/{index:032x}",
                "attributes": {"enabled": enabled, "created": int(created),
                               "updated": int(created)}}


@dataclass
class Tls:
    """A test CA (trustme) and a server context for 127.0.0.1."""

    ca_path: str
    server: ssl.SSLContext = field(repr=False)

    @classmethod
    def make(cls, directory: str) -> Tls:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        path = f"{directory}/ca.pem"
        ca.cert_pem.write_to_path(path)
        return cls(path, ctx)


def main() -> None:
    """`python -m tests.doubles twilio --port N [--journal FILE]`: the Twilio double as a
    process of its own, for the fault suite (bench/faults.py) to pause, kill and restart."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.doubles")
    parser.add_argument("service", choices=["twilio"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    double = TwilioDouble(journal=args.journal, port=args.port, latency=args.latency)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with double:
        print(f"twilio double on {double.url}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
