"""Sending through Twilio's REST API with twilio's async client.

One aiohttp session per process (connections are reused across jobs); a `twilio.rest.Client`
per set of credentials, rebuilt only when the credentials change. `TWILIO_API_BASE_URL`
points the client at a local double by rewriting the request origin in the HTTP client, the
seam twilio-python offers for this.

Every request takes a place in the instance's adaptive window (`shared.limiter`). A 429 (or,
for a read, a 503 that says when to come back, `Retry-After`) is retried right here, the same
request after a jittered, growing wait that honours `Retry-After`: Twilio documents that a
request answered 429 is never processed, so sending it again cannot send twice. The waits
stop at the throttle deadline of the current attempt (`throttle_budget`); past it,
`TwilioThrottled` lets the caller re-queue the job for later.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import functools
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient

from shared import redaction, twiml
from shared.credentials import CredentialCache, TwilioCredentials
from shared.jobs import MAX_TWIML_CHARS, Job, JobRejected
from shared.limiter import AdaptiveLimiter

TWILIO_ORIGIN = "https://api.twilio.com"
REQUEST_TIMEOUT_SECONDS = 15.0
# Looking for an earlier attempt's message or call: the newest few to the same recipient,
# created since that attempt began (less our clock's possible lead over Twilio's).
FIND_LIMIT = 20
CLOCK_SKEW_SECONDS = 15.0
# Throttled requests are retried here for at most this long per request, unless the caller
# set a deadline of its own (`throttle_budget`); waits grow from BASE to CAP, fully jittered.
THROTTLE_BUDGET_SECONDS = 10.0
THROTTLE_BACKOFF_BASE_SECONDS = 0.25
THROTTLE_BACKOFF_CAP_SECONDS = 4.0
# Retry-After beyond this is not waited out in the invocation: the job is re-queued instead.
RETRY_AFTER_CAP_SECONDS = 300.0
T = TypeVar("T")

_throttle_deadline: ContextVar[float | None] = ContextVar("twilio_throttle_deadline",
                                                          default=None)


@contextlib.contextmanager
def throttle_budget(seconds: float) -> Iterator[None]:
    """Within this block, throttled requests are retried until `seconds` from now in all
    (one attempt's share: an attempt must end inside the claim's lease)."""
    token = _throttle_deadline.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _throttle_deadline.reset(token)


class TwilioThrottled(TwilioRestException):  # type: ignore[misc]
    """Twilio kept refusing the request for load (429, or 503 with Retry-After) past the
    throttle deadline. Nothing was processed; `retry_after` is Twilio's hint, if any."""

    def __init__(self, status: int, uri: str, msg: str, code: int | None, method: str,
                 retry_after: float | None) -> None:
        super().__init__(status, uri, msg, code, method)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - now)


def throttle_wait(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """The wait before retry `attempt` (0-based) of a throttled request: full jitter over a
    doubling range, never less than Twilio's Retry-After (plus jitter, so that requests told
    the same second do not all return in it)."""
    spread = min(THROTTLE_BACKOFF_CAP_SECONDS, THROTTLE_BACKOFF_BASE_SECONDS * 2 ** attempt)
    jitter = rng.uniform(0, spread)
    return (retry_after + jitter) if retry_after is not None else jitter

# twilio-python logs every request at INFO; keep its lines out unless something is wrong.
_http_log = redaction.logger("shared.twilio_http")  # phone numbers masked
_http_log.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Sent:
    sid: str
    status: str | None


class RoutedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's aiohttp client, with a session made inside the running loop and an origin
    rewrite for local doubles."""

    def __init__(self, base_url: str = TWILIO_ORIGIN, *,
                 timeout: float = REQUEST_TIMEOUT_SECONDS, max_connections: int = 100,
                 limiter: AdaptiveLimiter | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(pool_connections=False, timeout=timeout, logger=_http_log)
        self.session: Any = None
        self._base = None if base_url == TWILIO_ORIGIN else base_url
        self._max_connections = max_connections
        self.limiter = limiter or AdaptiveLimiter(max_connections)
        self._rng = rng or random.Random()
        self.connections_opened = 0  # for benchmarks
        self.throttle_retries = 0  # requests sent again after a 429

    async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Any:
        if self.session is None:
            self.session = self._new_session()
        if self._base is not None:
            parts = urlsplit(url)
            if parts.hostname and parts.hostname.endswith(".twilio.com"):
                url = self._base + url[len(f"{parts.scheme}://{parts.netloc}"):]
        if auth is not None:
            # aiohttp deprecates its `auth=` argument and `BasicAuth`: send the header
            # they would have sent (RFC 7617), built once per set of credentials.
            headers = {**(headers or {}), "Authorization": self._basic(auth[0], auth[1])}
        loop = asyncio.get_running_loop()
        deadline = _throttle_deadline.get() or loop.time() + THROTTLE_BUDGET_SECONDS
        for attempt in range(1_000):
            try:
                slot = await self.limiter.acquire(timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                # Not sent: this instance's own window stayed full (its share of the
                # account's limit is small): the caller re-queues as for a 429.
                raise TwilioThrottled(429, url, "not sent: this instance's window of requests "
                                      "to Twilio stayed full (TWILIO_MAX_CONCURRENCY, "
                                      "shrunk by earlier 429s)", None, method, None) from None
            try:
                # aiohttp reads timeout=None as "no timeout": always pass ours.
                response = await super().request(method, url, params, data, headers, None,
                                                 timeout or self.timeout, allow_redirects)
                throttled, retry_after = _load_refusal(response, method)
                if not throttled:
                    if response.status_code < 500:
                        slot.ok()
                    return response
                slot.throttled()
            finally:
                await self.limiter.release(slot)
            wait = throttle_wait(attempt, retry_after, self._rng)
            if (retry_after or 0) > RETRY_AFTER_CAP_SECONDS or loop.time() + wait > deadline:
                code, message = _error(response)
                raise TwilioThrottled(response.status_code, url, message, code, method,
                                      retry_after)
            self.throttle_retries += 1
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the deadline ends the loop")

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a few credentials per process
    def _basic(self, user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def _new_session(self) -> Any:
        import aiohttp

        async def opened(*_: Any) -> None:
            self.connections_opened += 1

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(opened)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            trace_configs=[trace])

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


def _load_refusal(response: Any, method: str) -> tuple[bool, float | None]:
    """Whether `response` turns the request away for load, so that sending it again cannot
    repeat anything, and Twilio's Retry-After in seconds (None when it gave none). A 429 was
    never processed (Twilio's documentation of 20429). A 503 with a Retry-After counts only
    for a read: for a create, Twilio may have acted before answering it (shared.failures)."""
    headers = response.headers or {}
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    status = response.status_code
    read = method.upper() == "GET"
    return status == 429 or (read and status == 503 and retry_after is not None), retry_after


def _error(response: Any) -> tuple[int | None, str]:
    """Twilio's error code and message from an error answer, as twilio-python reads them."""
    try:
        doc = json.loads(response.text)
    except (TypeError, ValueError):
        return None, "Too Many Requests"
    if not isinstance(doc, dict):
        return None, "Too Many Requests"
    code = doc.get("code")
    return (code if isinstance(code, int) else None), str(doc.get("message") or
                                                           "Too Many Requests")


class TwilioApi:
    def __init__(self, credentials: CredentialCache, base_url: str = TWILIO_ORIGIN,
                 http_client: AsyncTwilioHttpClient | None = None,
                 max_concurrency: int = 8) -> None:
        self.credentials = credentials
        self.http_client = http_client or RoutedHttpClient(
            base_url, limiter=AdaptiveLimiter(max_concurrency))
        self._client: Any = None
        self._client_for: TwilioCredentials | None = None

    async def send(self, job: Job, from_number: str | None) -> Sent:
        """Create the message or call."""
        return await self._with_client(lambda client: self._create(client, job, from_number))

    async def find(self, job: Job, from_number: str | None, since: float) -> Sent | None:
        """The message or call an earlier attempt of `job` may have created since `since`
        (epoch seconds), or None. Twilio's list resources filter by To and From (To only
        for a Messaging Service, which picks the sender); the body (for a message) and the
        creation time narrow it to this job. Two jobs with the same
        recipient, sender and text in the same minutes cannot be told apart:
        docs/reliability.md says so, and `reconciled` on the job's row shows what was found."""
        return await self._with_client(lambda client: self._find(client, job, from_number,
                                                                 since))

    async def _with_client(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """`call(client)`; a 401 re-reads the secrets once (a rotated token)."""
        creds = await self.credentials.get()
        try:
            return await call(self._client_with(creds))
        except TwilioRestException as exc:
            if exc.status != 401:
                raise
            fresh = await self.credentials.refresh(creds)
            if fresh is None:
                raise
            return await call(self._client_with(fresh))

    async def _find(self, client: Any, job: Job, from_number: str | None, since: float
                    ) -> Sent | None:
        from twilio.base import values

        resource = client.messages if job.type == "sms" else client.calls
        items = await resource.list_async(to=job.to, from_=from_number or values.unset,
                                          limit=FIND_LIMIT)
        earliest = dt.datetime.fromtimestamp(since - CLOCK_SKEW_SECONDS, dt.UTC)
        matches = [i for i in items if i.date_created is not None
                   and i.date_created >= earliest
                   and (job.type != "sms" or _same_body(i.body, job))]
        if not matches:
            return None
        first = min(matches, key=lambda i: i.date_created)
        return Sent(first.sid, first.status)

    def _client_with(self, creds: TwilioCredentials) -> Any:
        if self._client is None or self._client_for != creds:
            from twilio.rest import Client  # slow import: only the queue path needs it

            self._client = Client(creds.account_sid, creds.auth_token,
                                  http_client=self.http_client, environment={})
            self._client_for = creds
        return self._client

    async def _create(self, client: Any, job: Job, from_number: str | None) -> Sent:
        if job.type == "sms":
            message = await client.messages.create_async(**message_params(job, from_number))
            return _sent(message, _MESSAGE_SID)
        call = await client.calls.create_async(**call_params(job, from_number))
        return _sent(call, _CALL_SID)

    async def close(self) -> None:
        await self.http_client.close()


def _same_body(found: str | None, job: Job) -> bool:
    """Whether a message Twilio holds has this job's text, as Twilio stores it: a trial
    account puts "Sent from your Twilio trial account - " before it, and a Messaging Service
    that shortens links rewrites them (then the text cannot tell, recipient and time do)."""
    if job.body is None or job.shorten_urls:
        return True
    return found is not None and (found == job.body or found.endswith(job.body))


_MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-f]{32}")
_CALL_SID = re.compile(r"CA[0-9a-f]{32}")


class UnreadableAnswer(RuntimeError):
    """Twilio (or something in front of it) answered a create with a success that names no
    resource: the request may have been acted on, so the job is looked up before a resend."""


def _sent(resource: Any, sid_shape: re.Pattern[str]) -> Sent:
    sid = getattr(resource, "sid", None)
    if not isinstance(sid, str) or not sid_shape.fullmatch(sid):
        raise UnreadableAnswer("Twilio's answer to the create names no message or call SID")
    return Sent(sid, getattr(resource, "status", None))


def message_params(job: Job, from_number: str | None) -> dict[str, Any]:
    """twilio-python's `messages.create_async` keyword arguments for an sms job; each is
    sent under the name Twilio's API spec gives it (in brackets)."""
    params = _present(
        to=job.to,                                         # To
        from_=from_number,                                 # From
        messaging_service_sid=job.messaging_service_sid,   # MessagingServiceSid
        status_callback=job.status_callback,               # StatusCallback
        body=job.body,                                     # Body
        media_url=list(job.media_url) or None,             # MediaUrl (repeated)
        content_sid=job.content_sid,                       # ContentSid
        validity_period=job.validity_period,               # ValidityPeriod
        shorten_urls=job.shorten_urls,                     # ShortenUrls ("true"/"false")
    )
    if job.content_variables is not None:                  # ContentVariables: JSON text
        params["content_variables"] = json.dumps(job.content_variables, ensure_ascii=False,
                                                 separators=(",", ":"))
    when = job.send_at_utc
    if when is not None:
        # twilio-python writes a datetime as "%Y-%m-%dT%H:%M:%SZ" without converting it:
        # it must be in UTC already.
        params.update(schedule_type="fixed", send_at=when)  # ScheduleType, SendAt
    return params


def call_params(job: Job, from_number: str | None) -> dict[str, Any]:
    """twilio-python's `calls.create_async` keyword arguments for a call job."""
    if job.say is not None:
        source: dict[str, str | None] = {"twiml": say_twiml(job)}  # Twiml
    elif job.twiml is not None:
        source = {"twiml": job.twiml}
    else:
        source = {"url": job.url}                          # Url
    return _present(
        to=job.to,                                         # To
        from_=from_number,                                 # From
        status_callback=job.status_callback,               # StatusCallback
        **source,
        machine_detection=job.machine_detection,           # MachineDetection
        machine_detection_timeout=job.machine_detection_timeout,  # MachineDetectionTimeout
        # AsyncAmd is a string in the spec and twilio-python passes it through as given.
        async_amd=None if job.async_amd is None else str(job.async_amd).lower(),
        async_amd_status_callback=job.async_amd_status_callback,  # AsyncAmdStatusCallback
        timeout=job.timeout,                               # Timeout
        time_limit=job.time_limit,                         # TimeLimit
        record=job.record,                                 # Record ("true"/"false")
        # Recording updates go where the call's status updates go (the job's row).
        recording_status_callback=job.status_callback if job.record else None,
        send_digits=job.send_digits,                       # SendDigits
        caller_id=job.caller_id,                           # CallerId
    )


def _present(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def say_twiml(job: Job) -> str:
    assert job.say is not None
    document = twiml.say(job.say, twiml.Speech(job.voice, job.language))
    if len(document) > MAX_TWIML_CHARS:
        raise JobRejected(f"field 'say': the text is {len(document)} characters once written "
                          f"as TwiML; Twilio takes at most {MAX_TWIML_CHARS}")
    return document
