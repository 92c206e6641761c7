"""Webhooks Twilio calls: parse, check the signature, answer with TwiML.

Framework-free: the HTTP triggers turn the host's request into a `WebhookRequest` and the
`WebhookResponse` back into the host's response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from shared import events, forms, jobs, redaction, signature, twiml, twimlets
from shared.credentials import CredentialCache, CredentialsError
from shared.ledger import Ledger
from shared.numbers import MESSAGING_ADDRESS
from shared.settings import Settings
from shared.signature import FormParams
from shared.storage import QueueWriter, TransientStorageError
from shared.twimlets import Links, Params, TwimletError

log = redaction.logger(__name__)  # phone numbers masked

# The largest webhook Twilio sends is an incoming message: a Body of 1600 characters (up to
# 4 bytes of UTF-8 each, 3 characters per byte once percent-encoded: 19.2 KB), 10
# MediaUrl<n> and MediaContentType<n>, WhatsApp's profile, location and ad-referral fields,
# and the usual ones: 42.7 KB with generous lengths for the fields Twilio does not bound
# (tests/unit/test_webhook_guards.py sends it). 64 KiB leaves room for add-on results and
# fields Twilio adds without notice; a forged body this size is refused within a few ms.
MAX_BODY_BYTES = 64 * 1024
# Distinct URLs whose twimlet answer is kept rendered, per twimlet.
RENDERED_URLS = 256
# Twilio's SID fields, checked for shape: side effects are deduplicated on them, and a
# request re-split under the same signature (the scheme concatenates names and values
# without separators) cannot keep a SID's shape.
SID_FIELDS = {name: re.compile(rf"(?:{prefixes})[0-9a-f]{{32}}") for name, prefixes in {
    "AccountSid": "AC", "MessageSid": "SM|MM", "SmsSid": "SM|MM", "SmsMessageSid": "SM|MM",
    "CallSid": "CA", "ParentCallSid": "CA", "DialCallSid": "CA", "RecordingSid": "RE",
    "TranscriptionSid": "TR"}.items()}
_STATUS_WORD = re.compile(r"[a-z][a-z_-]{0,31}")  # e.g. in-progress, machine_end_beep
# The names Twilio gives its form fields (AccountSid, MediaUrl0, SipHeader_X-Custom, msg):
# the first in sort order must look like one (see `_verify`).
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")


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
    query: FormParams = field(default_factory=FormParams)  # the signed URL's own query
    form: FormParams = field(default_factory=FormParams)  # the POST form (Twilio's fields)
    account_sid: str | None = None  # the account whose auth token signed it

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
        budget = self.settings.webhook_budget_seconds
        try:
            async with asyncio.timeout(budget):
                call = await self._verify(request)
                return await handler(call)
        except BadRequest as exc:
            return WebhookResponse.text(exc.status, str(exc))
        except TwimletError as exc:
            return WebhookResponse.text(400, str(exc))
        except (TimeoutError, TransientStorageError) as exc:
            # Storage (or the vault) is slow or down. A fast 503 lets Twilio retry or use
            # the number's fallback URL; the side effects were not marked done, so the
            # retry writes them.
            log.warning("webhook %s: %s; answered 503", route,
                        f"no answer within {budget:g} s (WEBHOOK_BUDGET_SECONDS)"
                        if isinstance(exc, TimeoutError) else exc)
            return WebhookResponse.text(503, "Temporarily unavailable; please retry.")
        except Exception:  # noqa: BLE001 - a dependency failed: Twilio retries a 503
            log.exception("webhook %s failed", route)
            return WebhookResponse.text(503, "Temporarily unavailable; please retry.")

    # -- routes ------------------------------------------------------------------------

    async def voice(self, call: Call) -> WebhookResponse:
        if not call.get("CallSid"):  # its shape is checked with every SID field
            raise BadRequest(400, "An incoming call needs CallSid.")
        flow = self.settings.call_flow
        if flow is None:
            return WebhookResponse(200, self._greeting)
        return WebhookResponse(200, flow.render(call.get("From"), self.settings.voice_greeting,
                                                Links(call.public_url)))

    async def sms(self, call: Call) -> WebhookResponse:
        # Twilio sends every incoming message with its SID: without one, the effect would be
        # keyed on the unsigned idempotency token, which a replay chooses.
        sid = call.get("MessageSid") or call.get("SmsSid")
        if not sid:
            raise BadRequest(400, "An incoming message needs MessageSid (or SmsSid).")
        for name in ("From", "To"):
            if not MESSAGING_ADDRESS.fullmatch(call.get(name) or ""):
                raise BadRequest(400, f"{name} is not a messaging address (E.164, a short "
                                      "code, a sender ID, or a channel's, like "
                                      "whatsapp:+15551234567).")

        async def publish() -> None:
            await self._publish(self.settings.inbound_queue_name,
                                events.inbound_sms(call.params))

        await self._once(f"sms:{sid}", publish)
        word = (call.get("Body") or "").strip().split(maxsplit=1)
        keyword = word[0].strip(".,!?").upper() if word else ""
        if keyword in self._keyword_replies:
            return WebhookResponse(200, self._keyword_replies[keyword])
        return WebhookResponse(200, self._sms_reply)

    async def status(self, call: Call) -> WebhookResponse:
        # `job` is ours, in the status callback URL we gave Twilio: from the query only.
        job_id = call.query.first("job")
        if job_id is not None and not jobs.valid_id(job_id):
            raise BadRequest(400, "Query parameter 'job' is not a job id (see the job "
                                  "schema's 'id').")
        event = events.status(call.params, job_id)
        if not event["sid"]:
            raise BadRequest(400, "A status callback needs MessageSid or CallSid.")
        if event["status"] and not _STATUS_WORD.fullmatch(event["status"]):
            raise BadRequest(400, "MessageStatus / CallStatus is not a Twilio status.")

        async def record() -> None:
            log_at = logging.WARNING if event["error_code"] or event["status"] in (
                "failed", "undelivered", "busy", "no-answer") else logging.INFO
            log.log(log_at, "status callback sid=%s status=%s error_code=%s",
                    event["sid"] or "-", event["status"] or "-", event["error_code"] or "-")
            await self._publish(self.settings.status_queue_name, event)
            if job_id and self.ledger is not None and not await self.ledger.record_status(
                    job_id, **events.row_fields(event), callback_sid=event["sid"]):
                log.info("status callback for job %s, which the jobs table does not hold",
                         job_id)

        await self._once(f"status:{event['event_id']}", record)
        return WebhookResponse(204, "", "text/plain")

    def _twimlet(self, name: str, build: twimlets.Twimlet | None = None) -> Handler:
        build = build or twimlets.TWIMLETS[name]
        rendered: dict[str, twimlets.Result] = {}  # URL -> answer, for URL_ONLY twimlets

        async def handler(call: Call) -> WebhookResponse:
            result = rendered.get(call.public_url) if name in twimlets.URL_ONLY else None
            if result is None:
                result = build(Params.from_request(call.query, call.form,
                                                   account_sid=call.account_sid),
                               Links(call.public_url))
                if name in twimlets.URL_ONLY and not result.jobs:
                    if len(rendered) >= RENDERED_URLS:
                        rendered.pop(next(iter(rendered)))  # the oldest
                    rendered[call.public_url] = result
            if result.jobs:
                for job in result.jobs:
                    _check_job(name, job)

                async def enqueue() -> None:
                    # At most 10 (one per moderator), written at once: within the budget.
                    await asyncio.gather(*(self._put(self.settings.outbound_queue_name, job)
                                           for job in result.jobs))
                # A twimlet's job ids are made of Twilio's SIDs (voicemail-<RecordingSid>,
                # conference-<CallSid>-<n>): the event they name is the effect's.
                await self._once(f"twiml/{name}:" + ",".join(
                    sorted(str(job["id"]) for job in result.jobs)), enqueue)
            return WebhookResponse(200, result.twiml)

        return handler

    # -- side effects: each once per Twilio delivery -----------------------------------------

    async def _once(self, effect: str, effects: Callable[[], Awaitable[None]]) -> None:
        """Run a webhook's side effects unless they ran already for this event: `effect`
        names it by Twilio's SIDs (checked for shape), never by the I-Twilio-Idempotency-
        Token, which Twilio does not sign: a captured request replayed with fresh tokens
        is the same event. The name is remembered after the effects, so a failure is
        retried by Twilio rather than lost."""
        if self.ledger is not None and await self.ledger.effect_seen(effect):
            return
        await effects()
        if self.ledger is not None:
            await self.ledger.remember_effect(effect)

    async def _publish(self, queue_name: str, event: dict[str, Any]) -> None:
        if self.queues is not None:
            await self.queues.put(queue_name, events.fit(event))

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
        # The cheap checks first: a request without a signature of the right shape is
        # refused before its body is decoded or parsed (a forged one costs at most the
        # parse of MAX_BODY_BYTES and a few HMACs: bench.startup measures it).
        if len(request.body) > MAX_BODY_BYTES:
            raise BadRequest(413, f"Request body over {MAX_BODY_BYTES} bytes: larger than "
                                  "any webhook Twilio sends.")
        sig = request.headers.get("x-twilio-signature")
        if not sig:
            raise BadRequest(403, "Missing X-Twilio-Signature header.")
        algorithm = signature.algorithm(
            request.headers.get("x-twilio-webhooks-signature-settings"))
        if algorithm is None:
            raise BadRequest(403, "Unsupported signature algorithm.")
        if not signature.well_shaped(sig, algorithm):
            raise BadRequest(403, "Invalid X-Twilio-Signature.")
        try:
            received = urlsplit(request.url)
        except ValueError:  # e.g. a Host header `[::1`: not a URL Twilio requested
            raise BadRequest(403, "Invalid X-Twilio-Signature.") from None
        form: FormParams | None = None
        json_body: str | None = None
        if request.method.upper() == "POST" and request.body:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in ("application/json", "application/x-www-form-urlencoded",
                                    ""):
                raise BadRequest(415, "Unsupported Content-Type: send a form or JSON.")
            text = _decode(request.body)
            if content_type == "application/json":
                json_body = text
            else:
                form = _parse_form(text, "form body")
        query = _parse_form(received.query, "query string")
        url = signature.public_url(request.url, self.settings.webhook_base_url)
        creds = await self.credentials.get()

        def valid(tokens: tuple[str, ...]) -> bool:
            return any(signature.is_valid(url=url, auth_token=token, signature=sig, form=form,
                                          body=json_body, algorithm=algorithm)
                       for token in tokens)

        if not valid(creds.webhook_tokens):
            # The auth token may have been rotated since it was cached: read it once more
            # (at most once per 10 s, however many forged requests arrive).
            try:
                fresh = await self.credentials.refresh(creds)
            except CredentialsError as exc:
                log.warning("could not re-read the Twilio credentials to check a signature "
                            "(%s); answered 403", exc)
                fresh = None
            if fresh is None or not valid(fresh.webhook_tokens):
                raise BadRequest(403, "Invalid X-Twilio-Signature.")
            creds = fresh
        if form and not FIELD_NAME.fullmatch(min(form)):
            # Twilio signs the URL and the sorted fields run together: moving the URL's
            # tail into the first field's name keeps a captured signature valid for a URL
            # Twilio never requested (`?job=order-104` and a field `2AccountSid`). No name
            # Twilio gives a field starts that way.
            raise BadRequest(400, "The form's first field name is not one Twilio sends.")
        params = FormParams(form or {})
        params.update(query)
        for name, values in params.items():
            pattern = SID_FIELDS.get(name)
            if pattern is not None and not all(pattern.fullmatch(v) for v in values):
                raise BadRequest(400, f"{name} is not a Twilio SID.")
        return Call(params, url, query=query, form=form or FormParams(),
                    account_sid=creds.account_sid)


def _check_job(twimlet: str, doc: Mapping[str, Any]) -> None:
    """A twimlet's notification passes the queue trigger's own job validation before it is
    queued. A bad one is this request's 400 (Twilio's debugger shows the reason, naming the
    field), not a dead letter later or, too large for the queue, a 503 on every retry."""
    try:
        jobs.from_dict(dict(doc), clock=None)
    except jobs.JobRejected as exc:
        raise BadRequest(400, f"{twimlet}: its notification SMS cannot be sent: {exc}.") \
            from None


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "Request body is not UTF-8.") from None


def _parse_form(text: str, what: str) -> FormParams:
    try:
        # A query string may be a person's (a twimlet URL pasted into the console).
        return forms.parse(text, lenient=what == "query string")
    except forms.MalformedForm as exc:
        raise BadRequest(400, f"Malformed {what}: {exc}.") from None
