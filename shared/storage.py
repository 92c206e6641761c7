"""Clients for the app's storage account (queues and the jobs table), by connection string
locally or by managed identity in Azure. The SDKs are imported on first use."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol
from xml.sax.saxutils import escape

from shared.settings import StorageSettings

# A storage queue message holds at most 64 KiB. Azurite counts the text's UTF-8 bytes; the
# size is reckoned here on the XML-escaped text the SDK sends, which is never smaller.
MAX_MESSAGE_BYTES = 64 * 1024


def queue_bytes(text: str) -> int:
    """The size `text` takes on a queue, as `MAX_MESSAGE_BYTES` counts it."""
    return len(escape(text).encode("utf-8"))


class QueueWriter(Protocol):
    """What the app needs of a queue: put a text message, maybe delayed."""

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str: ...


class Storage:
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
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
            self._session = aiohttp.ClientSession(trust_env=False)
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

            if self.settings.connection_string:
                client = QueueClient.from_connection_string(self.settings.connection_string,
                                                            name, transport=self._transport())
            else:
                assert self.settings.queue_service_uri  # Settings.from_env guarantees it
                client = QueueClient(self.settings.queue_service_uri, name,
                                     credential=self._identity(), transport=self._transport())
            self._queues[name] = client
        if name not in self._ready:
            async with self._lock:
                if name not in self._ready:
                    await _create_if_missing(client)
                    self._ready.add(name)
        return client

    async def put(self, queue_name: str, text: str, *, delay_seconds: int = 0) -> str:
        """Enqueue plain text (the app reads plain and base64 alike) and return its id."""
        client = await self.queue(queue_name)
        sent = await client.send_message(text, visibility_timeout=delay_seconds or None,
                                         time_to_live=-1)
        return str(sent.id)

    def table(self, name: str) -> Any:
        from azure.data.tables.aio import TableClient

        if self.settings.connection_string:
            return TableClient.from_connection_string(self.settings.connection_string, name,
                                                      transport=self._transport())
        assert self.settings.table_service_uri  # Settings.from_env guarantees it
        return TableClient(self.settings.table_service_uri, name, credential=self._identity(),
                           transport=self._transport())

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
