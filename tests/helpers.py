"""Test helpers shared by unit and integration tests: settings, signing, request objects,
and in-memory fakes passed in by injection."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
from twilio.request_validator import RequestValidator

from shared.ledger import LEASE_SECONDS, Claim, ClaimLost, assess, claim_fields, effect_key
from shared.settings import Settings
from shared.signature import FormParams
from shared.twilio_rest import Sent

ACCOUNT_SID = "AC" + "1" * 32  # test value
AUTH_TOKEN = "testAuthToken7f3a9c0000000000000"  # test value, must never show up in output
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
    """Records jobs instead of calling Twilio; `script` raises/returns per call. `find`
    answers from `at_twilio` (what an earlier attempt left there) or `find_script`."""

    def __init__(self, *script: BaseException | Sent) -> None:
        self.script = list(script)
        self.calls: list[tuple[Any, str]] = []
        self.finds: list[tuple[Any, str, float]] = []
        self.find_script: list[BaseException | Sent | None] = []

    async def send(self, job: Any, from_number: str) -> Sent:
        self.calls.append((job, from_number))
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        return Sent(f"SM{len(self.calls):032x}", "queued")

    async def find(self, job: Any, from_number: str, since: float) -> Sent | None:
        self.finds.append((job, from_number, since))
        if self.find_script:
            item = self.find_script.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        return None


class MemoryQueues:
    def __init__(self) -> None:
        self.messages: dict[str, list[tuple[str, int]]] = {}

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        self.messages.setdefault(queue_name, []).append((text, delay_seconds))
        return f"m{sum(map(len, self.messages.values()))}"

    def texts(self, queue_name: str) -> list[str]:
        return [t for t, _ in self.messages.get(queue_name, [])]


class MemoryLedger:
    """The ledger's contract in memory (the Table Storage one is tested on Azurite): the
    same `assess` rule, with a version number standing in for the ETag."""

    def __init__(self, clock: Any = time.time, lease: float = LEASE_SECONDS) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.effects: set[str] = set()
        self.clock = clock
        self.lease = lease

    def _write(self, key: str, fields: dict[str, Any]) -> str:
        self.rows.setdefault(key, {}).update({k: v for k, v in fields.items()
                                              if v is not None and k not in
                                              ("PartitionKey", "RowKey")})
        self.versions[key] = self.versions.get(key, 0) + 1
        return str(self.versions[key])

    async def claim(self, key: str, message_id: str) -> Claim:
        now, claim_id = self.clock(), uuid.uuid4().hex
        row = self.rows.get(key)
        if row is None:
            etag = self._write(key, {**claim_fields(key, message_id, claim_id, 1, now, 0.0,
                                                    self.lease),
                                     "first_message_id": message_id})
            return Claim("claimed", key, 1, None, claim_id, etag, claimed_at=now)
        state, since = assess(row, message_id, now)
        attempts = int(row.get("attempts") or 0)
        if state != "claim":
            return Claim(state, key, attempts, dict(row),
                         wait_seconds=max(0.0, float(row.get("lease_until") or 0) - now))
        before = dict(row)
        etag = self._write(key, claim_fields(key, message_id, claim_id, attempts + 1, now,
                                             since, self.lease))
        return Claim("claimed", key, attempts + 1, before, claim_id, etag, since,
                     claimed_at=now)

    async def update(self, claim: Claim, **fields: Any) -> Claim:
        if self.rows.get(claim.key, {}).get("claim_id") != claim.claim_id:
            raise ClaimLost(f"job {claim.key}: another delivery took the claim over")
        return replace(claim, etag=self._write(claim.key, fields))

    async def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    async def record_status(self, key: str, **fields: Any) -> bool:
        if key not in self.rows:
            return False
        self._write(key, fields)
        return True

    async def effect_seen(self, name: str) -> bool:
        return effect_key(name) in self.effects

    async def remember_effect(self, name: str) -> None:
        self.effects.add(effect_key(name))


def trigger(name: str) -> Any:
    """The user function registered under `name` in function_app."""
    import function_app
    from devhost.host import functions_of

    [fn] = [f for f in functions_of(function_app.app) if f.get_function_name() == name]
    return fn.get_user_function()
