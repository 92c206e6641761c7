"""Webhooks Twilio calls: parse, check the signature, answer with TwiML.

Framework-free: the HTTP triggers turn the host's request into a `WebhookRequest` and the
`WebhookResponse` back into the host's response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl, urlsplit

from shared import events, signature, twiml, twimlets
from shared.credentials import CredentialCache
from shared.ledger import Ledger
from shared.settings import Settings
from shared.signature import FormParams
from shared.storage import QueueWriter
from shared.twimlets import Links, Params, TwimletError

log = logging.getLogger(__name__)

# Twilio's webhook requests are a few KB; anything far larger is not from Twilio.
MAX_BODY_BYTES = 256 * 1024


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


Handler = Callable[[Call], Awaitable[WebhookResponse]]



class Webhooks:
    def __init__(self, settings: Settings, credentials: CredentialCache,
                 ledger: Ledger | None = None, queues: QueueWriter | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.ledger = ledger
        self.queues = queues
        self.routes: dict[str, Handler] = {
            "voice": self.voice,
            "sms": self.sms,
            "status": self.status,
            **{f"twiml/{name}": self._twimlet(name) for name in twimlets.TWIMLETS},
        }

    async def handle(self, route: str, request: WebhookRequest) -> WebhookResponse:
        handler = self.routes.get(route)
        if handler is None:
            return WebhookResponse.text(404, f"No such route: {route}.")
        try:
            call = await self._verify(request)
            return await handler(call)
        except BadRequest as exc:
            return WebhookResponse.text(exc.status, str(exc))
        except TwimletError as exc:
            return WebhookResponse.text(400, str(exc))
        except Exception:  # noqa: BLE001 - a dependency (storage) failed: Twilio retries a 503
            log.exception("webhook %s failed", route)
            return WebhookResponse.text(503, "Temporarily unavailable; please retry.")

    # -- routes ------------------------------------------------------------------------

    async def voice(self, call: Call) -> WebhookResponse:
        flow = self.settings.call_flow
        if flow is None:
            return WebhookResponse(200, self._greeting)
        return WebhookResponse(200, flow.render(call.get("From"), self.settings.voice_greeting,
                                                Links(call.public_url)))

    async def sms(self, call: Call) -> WebhookResponse:
        async def publish() -> None:
            await self._publish(self.settings.inbound_queue_name,
                                events.inbound_sms(call.params))

        await self._once(call, publish)
        word = (call.get("Body") or "").strip().split(maxsplit=1)
        keyword = word[0].strip(".,!?").upper() if word else ""
        if keyword in self._keyword_replies:
            return WebhookResponse(200, self._keyword_replies[keyword])
        return WebhookResponse(200, self._sms_reply)

    async def status(self, call: Call) -> WebhookResponse:
        job_id = call.get("job")
        event = events.status(call.params, job_id)

        async def record() -> None:
            log_at = logging.WARNING if event["error_code"] or event["status"] in (
                "failed", "undelivered", "busy", "no-answer") else logging.INFO
            log.log(log_at, "status callback sid=%s status=%s error_code=%s",
                    event["sid"] or "-", event["status"] or "-", event["error_code"] or "-")
            await self._publish(self.settings.status_queue_name, event)
            if job_id and self.ledger is not None:
                await self.ledger.record(job_id, **events.row_fields(event))

        await self._once(call, record)
        return WebhookResponse(204, "", "text/plain")

    def _twimlet(self, name: str) -> Handler:
        build = twimlets.TWIMLETS[name]

        async def handler(call: Call) -> WebhookResponse:
            result = build(Params(call.params), Links(call.public_url))
            if result.jobs:
                async def enqueue() -> None:
                    for job in result.jobs:
                        await self._put(self.settings.outbound_queue_name, job)
                await self._once(call, enqueue)
            return WebhookResponse(200, result.twiml)

        return handler

    # -- side effects: each once per Twilio delivery -----------------------------------------

    async def _once(self, call: Call, effects: Callable[[], Awaitable[None]]) -> None:
        """Run a webhook's side effects unless Twilio is retrying one that ran already
        (same I-Twilio-Idempotency-Token). The token is remembered after the effects, so a
        failure is retried by Twilio rather than lost."""
        token = call.idempotency_token
        if token and self.ledger is not None and await self.ledger.token_seen(token):
            return
        await effects()
        if token and self.ledger is not None:
            await self.ledger.remember_token(token)

    async def _publish(self, queue_name: str, event: dict[str, object]) -> None:
        if self.queues is not None:
            await self._put(queue_name, event)

    async def _put(self, queue_name: str, doc: Mapping[str, object]) -> None:
        assert self.queues is not None
        await self.queues.put(queue_name, json.dumps(doc, ensure_ascii=False))

    @cached_property
    def _keyword_replies(self) -> dict[str, str]:
        return {k: twiml.message(v) for k, v in self.settings.sms_keywords.items()}

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
