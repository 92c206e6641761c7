"""Sending through Twilio's REST API with twilio's async client.

One aiohttp session per process (connections are reused across jobs); a `twilio.rest.Client`
per set of credentials, rebuilt only when the credentials change. `TWILIO_API_BASE_URL`
points the client at a local double by rewriting the request origin in the HTTP client, the
seam twilio-python offers for this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twilio.http.async_http_client import AsyncTwilioHttpClient

from shared import twiml
from shared.credentials import CredentialCache, TwilioCredentials
from shared.jobs import MAX_TWIML_CHARS, Job, JobRejected

TWILIO_ORIGIN = "https://api.twilio.com"
REQUEST_TIMEOUT_SECONDS = 15.0

# twilio-python logs every request at INFO; keep its lines out unless something is wrong.
_http_log = logging.getLogger("shared.twilio_http")
_http_log.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Sent:
    sid: str
    status: str | None


class RoutedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's aiohttp client, with a session made inside the running loop and an origin
    rewrite for local doubles."""

    def __init__(self, base_url: str = TWILIO_ORIGIN, *,
                 timeout: float = REQUEST_TIMEOUT_SECONDS, max_connections: int = 100) -> None:
        super().__init__(pool_connections=False, timeout=timeout, logger=_http_log)
        self.session: Any = None
        self._base = None if base_url == TWILIO_ORIGIN else base_url
        self._max_connections = max_connections
        self.connections_opened = 0  # for benchmarks

    async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Any:
        if self.session is None:
            self.session = self._new_session()
        if self._base is not None:
            parts = urlsplit(url)
            if parts.hostname and parts.hostname.endswith(".twilio.com"):
                url = self._base + url[len(f"{parts.scheme}://{parts.netloc}"):]
        # aiohttp reads timeout=None as "no timeout": always pass ours.
        return await super().request(method, url, params, data, headers, auth,
                                     timeout or self.timeout, allow_redirects)

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


class TwilioApi:
    def __init__(self, credentials: CredentialCache, base_url: str = TWILIO_ORIGIN,
                 http_client: AsyncTwilioHttpClient | None = None) -> None:
        self.credentials = credentials
        self.http_client = http_client or RoutedHttpClient(base_url)
        self._client: Any = None
        self._client_for: TwilioCredentials | None = None

    async def send(self, job: Job, from_number: str) -> Sent:
        """Create the message or call. A 401 re-reads the secrets once (a rotated token)."""
        from twilio.base.exceptions import TwilioRestException

        creds = await self.credentials.get()
        try:
            return await self._create(self._client_with(creds), job, from_number)
        except TwilioRestException as exc:
            if exc.status != 401:
                raise
            fresh = await self.credentials.refresh(creds)
            if fresh is None:
                raise
            return await self._create(self._client_with(fresh), job, from_number)

    def _client_with(self, creds: TwilioCredentials) -> Any:
        if self._client is None or self._client_for != creds:
            from twilio.rest import Client  # slow import: only the queue path needs it

            self._client = Client(creds.account_sid, creds.auth_token,
                                  http_client=self.http_client, environment={})
            self._client_for = creds
        return self._client

    async def _create(self, client: Any, job: Job, from_number: str) -> Sent:
        common: dict[str, Any] = {"to": job.to, "from_": from_number}
        if job.status_callback:
            common["status_callback"] = job.status_callback
        if job.type == "sms":
            if job.body is not None:
                common["body"] = job.body
            if job.media_url:
                common["media_url"] = list(job.media_url)
            message = await client.messages.create_async(**common)
            return Sent(message.sid, message.status)
        if job.say is not None:
            common["twiml"] = say_twiml(job)
        elif job.twiml is not None:
            common["twiml"] = job.twiml
        else:
            common["url"] = job.url
        call = await client.calls.create_async(**common)
        return Sent(call.sid, call.status)

    async def close(self) -> None:
        await self.http_client.close()


def say_twiml(job: Job) -> str:
    assert job.say is not None
    document = twiml.say(job.say, twiml.Speech(job.voice, job.language))
    if len(document) > MAX_TWIML_CHARS:
        raise JobRejected(f"field 'say': the text is {len(document)} characters once written "
                          f"as TwiML; Twilio takes at most {MAX_TWIML_CHARS}")
    return document
