"""Webhooks Twilio calls: parse, check the signature, answer with TwiML.

Framework-free: the HTTP triggers turn the host's request into a `WebhookRequest` and the
`WebhookResponse` back into the host's response.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl, urlsplit

from shared import signature, twiml
from shared.credentials import CredentialCache
from shared.ledger import Ledger
from shared.settings import Settings
from shared.signature import FormParams

log = logging.getLogger(__name__)

# Twilio's webhook requests are a few KB; anything far larger is not from Twilio.
MAX_BODY_BYTES = 256 * 1024
_INDEXED = re.compile(r"^(?P<name>[A-Za-z]+)\[(?P<index>\d{0,6})\]$")


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    url: str  # the URL as the worker received it
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: str = ""
    content_type: str = "text/xml"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, reason: str) -> WebhookResponse:
        return cls(status, reason + "\n", "text/plain; charset=utf-8")


class BadRequest(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Call:
    """A verified webhook request, as a route handler sees it."""

    params: FormParams  # query parameters, then form fields (the query wins on a clash)
    public_url: str
    idempotency_token: str | None = None  # Twilio's I-Twilio-Idempotency-Token

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.first(name, default)

    def indexed(self, name: str) -> list[str]:
        """`Name`, then `Name[0]`, `Name[1]` ... in index order, then `Name[]` in order sent."""
        plain = list(self.params.get(name, []))
        numbered: list[tuple[int, str]] = []
        appended: list[str] = []
        for key, items in self.params.items():
            m = _INDEXED.match(key)
            if m and m["name"] == name:
                if m["index"]:
                    numbered.extend((int(m["index"]), v) for v in items)
                else:
                    appended.extend(items)
        return plain + [v for _, v in sorted(numbered, key=lambda pair: pair[0])] + appended


Handler = Callable[[Call], Awaitable[WebhookResponse]]


class Webhooks:
    def __init__(self, settings: Settings, credentials: CredentialCache,
                 ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.ledger = ledger
        self.routes: dict[str, Handler] = {
            "voice": self.voice,
            "sms": self.sms,
            "twiml/message": self.message_twimlet,
            "status": self.status,
        }

    async def handle(self, route: str, request: WebhookRequest) -> WebhookResponse:
        try:
            call = await self._verify(request)
        except BadRequest as exc:
            return WebhookResponse.text(exc.status, str(exc))
        return await self.routes[route](call)

    # -- routes ------------------------------------------------------------------------

    async def voice(self, call: Call) -> WebhookResponse:
        return WebhookResponse(200, self._greeting)

    async def sms(self, call: Call) -> WebhookResponse:
        return WebhookResponse(200, self._sms_reply)

    async def message_twimlet(self, call: Call) -> WebhookResponse:
        speech = twiml.Speech(call.get("Voice"), call.get("Language"))
        return WebhookResponse(200, twiml.say_or_play(call.indexed("Message"), speech))

    async def status(self, call: Call) -> WebhookResponse:
        if not await self._first_delivery(call):
            return WebhookResponse(204, "", "text/plain")  # Twilio's retry: done already
        sid = call.get("MessageSid") or call.get("CallSid") or "-"
        status = call.get("MessageStatus") or call.get("CallStatus") or call.get("SmsStatus")
        error = call.get("ErrorCode")
        log_at = logging.WARNING if error or status in ("failed", "undelivered") else logging.INFO
        log.log(log_at, "status callback sid=%s status=%s error_code=%s",
                sid, status or "-", error or "-")
        return WebhookResponse(204, "", "text/plain")

    async def _first_delivery(self, call: Call) -> bool:
        """False when Twilio retries a webhook whose side effects already happened."""
        if not call.idempotency_token or self.ledger is None:
            return True
        return await self.ledger.first_time(call.idempotency_token)

    # Answers that depend only on settings are rendered once.
    @cached_property
    def _greeting(self) -> str:
        return twiml.say(self.settings.voice_greeting)

    @cached_property
    def _sms_reply(self) -> str:
        return twiml.message(self.settings.sms_auto_reply)

    # -- parsing and signature ------------------------------------------------------------

    async def _verify(self, request: WebhookRequest) -> Call:
        if len(request.body) > MAX_BODY_BYTES:
            raise BadRequest(413, "Request body too large.")
        url = signature.public_url(request.url, self.settings.webhook_base_url)
        query = _parse_form(urlsplit(request.url).query, "query string")
        form: FormParams | None = None
        json_body: str | None = None
        if request.method.upper() == "POST" and request.body:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            text = _decode(request.body)
            if content_type == "application/json":
                json_body = text
            elif content_type in ("application/x-www-form-urlencoded", ""):
                form = _parse_form(text, "form body")
            else:
                raise BadRequest(415, "Unsupported Content-Type: send a form or JSON.")
        sig = request.headers.get("x-twilio-signature")
        if not sig:
            raise BadRequest(403, "Missing X-Twilio-Signature header.")
        settings_header = request.headers.get("x-twilio-webhooks-signature-settings")
        creds = await self.credentials.get()
        check = dict(url=url, signature=sig, form=form, body=json_body,
                     settings_header=settings_header)
        if not signature.is_valid(auth_token=creds.auth_token, **check):  # type: ignore[arg-type]
            # The auth token may have been rotated since it was cached: read it once more.
            fresh = await self.credentials.refresh(creds)
            if fresh is None or not signature.is_valid(auth_token=fresh.auth_token,
                                                       **check):  # type: ignore[arg-type]
                raise BadRequest(403, "Invalid X-Twilio-Signature.")
        params = FormParams(form or {})
        params.update(query)
        return Call(params, url, request.headers.get("i-twilio-idempotency-token"))


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "Request body is not UTF-8.") from None


def _parse_form(text: str, what: str) -> FormParams:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=1000)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, f"Malformed {what}.") from None
    params = FormParams()
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params
