"""Test helpers shared by unit and integration tests: settings, signing, request objects,
and in-memory fakes passed in by injection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
from twilio.request_validator import RequestValidator

from shared.ledger import Claim, held_state
from shared.settings import Settings
from shared.signature import FormParams
from shared.twilio_rest import Sent

ACCOUNT_SID = "AC" + "1" * 32  # test value
AUTH_TOKEN = "test-auth-token-7f3a9c"  # test value, must never show up in output
FROM = "+15005550006"


def env(**overrides: str) -> dict[str, str]:
    values = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
              "TWILIO_FROM_NUMBER": FROM, "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def settings(**overrides: str) -> Settings:
    return Settings.from_env(env(**overrides))


def sign(url: str, form: Mapping[str, Any] | None = None, token: str = AUTH_TOKEN) -> str:
    params = FormParams({k: v if isinstance(v, list) else [v] for k, v in (form or {}).items()})
    return RequestValidator(token).compute_signature(url, params)


def form_body(form: Mapping[str, Any]) -> bytes:
    pairs = [(k, x) for k, v in form.items() for x in (v if isinstance(v, list) else [v])]
    return urlencode(pairs).encode()


def http_request(url: str, form: Mapping[str, Any] | None = None, *, method: str = "POST",
                 signature: str | None = None, public_url: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 body: bytes | None = None) -> func.HttpRequest:
    """A real `func.HttpRequest`, signed for `public_url` (default: `url`)."""
    all_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is None:
        signature = sign(public_url or url, form if method == "POST" else None)
    if signature:
        all_headers["X-Twilio-Signature"] = signature
    all_headers.update(headers or {})
    if body is None:
        body = form_body(form) if form and method == "POST" else b""
    path = url.split("?", 1)[0]
    route_params = {"name": path.rsplit("/twiml/", 1)[1]} if "/twiml/" in path else {}
    return func.HttpRequest(method=method, url=url, headers=all_headers, body=body,
                            route_params=route_params)


class FakeSender:
    """Records jobs instead of calling Twilio; `script` raises/returns per call."""

    def __init__(self, *script: BaseException | Sent) -> None:
        self.script = list(script)
        self.calls: list[tuple[Any, str]] = []

    async def send(self, job: Any, from_number: str) -> Sent:
        self.calls.append((job, from_number))
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        return Sent(f"SM{len(self.calls):032x}", "queued")


class MemoryQueues:
    def __init__(self) -> None:
        self.messages: dict[str, list[tuple[str, int]]] = {}

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        self.messages.setdefault(queue_name, []).append((text, delay_seconds))
        return f"m{sum(map(len, self.messages.values()))}"

    def texts(self, queue_name: str) -> list[str]:
        return [t for t, _ in self.messages.get(queue_name, [])]


class MemoryLedger:
    """The ledger's contract in memory (the Table Storage one is tested on Azurite)."""

    def __init__(self, clock: Any = time.time, lease: float = 60.0) -> None:
        self._claim = Claim
        self.rows: dict[str, dict[str, Any]] = {}
        self.clock = clock
        self.lease = lease
        self._lock = asyncio.Lock()

    async def claim(self, key: str, message_id: str) -> Any:
        async with self._lock:
            now = self.clock()
            row = self.rows.get(key)
            if row is None:
                self.rows[key] = {"status": "sending", "attempts": 1,
                                  "lease_until": now + self.lease}
                return self._claim("claimed", 1)
            state = held_state(row, now)
            if state is not None:
                return self._claim(state, row["attempts"], dict(row))
            row.update(status="sending", attempts=row["attempts"] + 1,
                       lease_until=now + self.lease)
            return self._claim("claimed", row["attempts"])

    async def record(self, key: str, **fields: Any) -> None:
        self.rows.setdefault(key, {}).update({k: v for k, v in fields.items() if v is not None})

    async def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    async def token_seen(self, token: str) -> bool:
        return f"token:{token}" in self.rows

    async def remember_token(self, token: str) -> None:
        self.rows[f"token:{token}"] = {}


def trigger(name: str) -> Any:
    """The user function registered under `name` in function_app."""
    import function_app
    from devhost.host import functions_of

    [fn] = [f for f in functions_of(function_app.app) if f.get_function_name() == name]
    return fn.get_user_function()
