"""Clients for the app's storage account (queues and the jobs table), by connection string
locally or by managed identity in Azure. The SDKs are imported on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from xml.sax.saxutils import escape

from shared.settings import StorageSettings

# A storage queue message holds at most 64 KiB. Azurite counts the text's UTF-8 bytes; the
# size is reckoned here on the XML-escaped text the SDK sends, which is never smaller.
MAX_MESSAGE_BYTES = 64 * 1024


T = TypeVar("T")


def queue_bytes(text: str) -> int:
    """The size `text` takes on a queue, as `MAX_MESSAGE_BYTES` counts it."""
    return len(escape(text).encode("utf-8"))


# Azurite closes a keep-alive connection after 5 s idle and Azure's front ends after a few
# minutes; a request written on a connection the server has just closed fails. Pooled
# connections idle longer than this are dropped instead of reused.
IDLE_CONNECTION_SECONDS = 4.0


class TransientStorageError(RuntimeError):
    """Storage did not answer in time or at all, after the retries: try again later."""


@dataclass(frozen=True)
class RetryPolicy:
    """How one storage operation is retried: every try has its own timeout, and the SDKs'
    own retries are off (they retry connection errors only for idempotent methods, and their
    backoff runs to tens of seconds). Every operation the app retries is idempotent by design
    or harmless when repeated (see `shared.ledger`)."""

    tries: int = 4
    timeout_seconds: float = 5.0
    backoff_seconds: tuple[float, ...] = (0.1, 0.5, 1.5)


DEFAULT_RETRY = RetryPolicy()


def is_transient(exc: BaseException) -> bool:
    """A fault that trying again may fix: no answer, a broken connection, 408/429/5xx."""
    from azure.core.exceptions import (
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, (ServiceRequestError, ServiceResponseError, TimeoutError, OSError)):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code in (408, 429, 500, 502, 503, 504)
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - comes with the SDKs' transport
        return False
    return isinstance(exc, aiohttp.ClientError)


async def retrying(op: Callable[[], Awaitable[T]], policy: RetryPolicy = DEFAULT_RETRY,
                   what: str = "storage operation") -> T:
    """`op()` under `policy`; a fault that outlasts it raises `TransientStorageError`."""
    for attempt in range(policy.tries):
        try:
            async with asyncio.timeout(policy.timeout_seconds):
                return await op()
        except Exception as exc:  # noqa: BLE001 - re-raised unless transient
            if not is_transient(exc):
                raise
            if attempt + 1 >= policy.tries:
                raise TransientStorageError(
                    f"{what} failed {policy.tries} times ({type(exc).__name__})") from exc
            delays = policy.backoff_seconds
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)] if delays else 0)
    raise AssertionError("unreachable")


class QueueWriter(Protocol):
    """What the app needs of a queue: put a text message, maybe delayed."""

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str: ...


class Storage:
    def __init__(self, settings: StorageSettings, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.settings = settings
        self.retry = retry
        self._queues: dict[str, Any] = {}
        self._ready: set[str] = set()
        self._credential: Any = None
        self._session: Any = None
        self._lock = asyncio.Lock()

    def _transport(self) -> Any:
        """One aiohttp session for every storage client. Its `trust_env` is off: with it on,
        aiohttp looks up proxy settings in a worker thread on every request, which doubled
        the CPU cost of a table write (bench/throughput.py)."""
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport

        if self._session is None:
            self._session = aiohttp.ClientSession(
                trust_env=False,
                connector=aiohttp.TCPConnector(keepalive_timeout=IDLE_CONNECTION_SECONDS))
        return AioHttpTransport(session=self._session, session_owner=False)

    def _identity(self) -> Any:
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential(
                managed_identity_client_id=self.settings.client_id)
        return self._credential

    async def queue(self, name: str) -> Any:
        """An async `QueueClient` for `name`, the queue created on first use."""
        client = self._queues.get(name)
        if client is None:
            from azure.storage.queue.aio import QueueClient

            options = {"transport": self._transport(), "retry_total": 0}
            if self.settings.connection_string:
                client = QueueClient.from_connection_string(self.settings.connection_string,
                                                            name, **options)
            else:
                assert self.settings.queue_service_uri  # Settings.from_env guarantees it
                client = QueueClient(self.settings.queue_service_uri, name,
                                     credential=self._identity(), **options)
            self._queues[name] = client
        if name not in self._ready:
            async with self._lock:
                if name not in self._ready:
                    await retrying(lambda: _create_if_missing(client), self.retry,
                                   f"creating queue {name}")
                    self._ready.add(name)
        return client

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        """Enqueue plain text (the app reads plain and base64 alike) and return its id.
        A retried send may leave a second copy: every reader of our queues tolerates that
        (jobs by their key, events by `event_id`)."""
        size = queue_bytes(text)
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"a {size}-byte message does not fit queue {queue_name} "
                             f"(at most {MAX_MESSAGE_BYTES})")
        client = await self.queue(queue_name)
        sent = await retrying(lambda: client.send_message(
            text, visibility_timeout=delay_seconds or None, time_to_live=-1), self.retry,
            f"writing to queue {queue_name}")
        return str(sent.id)

    def table(self, name: str) -> Any:
        from azure.data.tables.aio import TableClient

        options = {"transport": self._transport(), "retry_total": 0}  # `retrying` retries
        if self.settings.connection_string:
            return TableClient.from_connection_string(self.settings.connection_string, name,
                                                      **options)
        assert self.settings.table_service_uri  # Settings.from_env guarantees it
        return TableClient(self.settings.table_service_uri, name, credential=self._identity(),
                           **options)

    async def close(self) -> None:
        for client in self._queues.values():
            await client.close()
        self._queues.clear()
        if self._credential is not None:
            await self._credential.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _create_if_missing(client: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    try:
        await client.create_queue()
    except ResourceExistsError:
        pass
