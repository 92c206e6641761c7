"""The process-wide objects the triggers use, built once on first use.

Building nothing at import keeps the cold start small; building once keeps one vault read,
one HTTP session and one storage client per process. Tests build a `Runtime` of their own
with fakes passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared import retention
from shared.credentials import CredentialCache, source_for
from shared.ledger import ATTEMPT_SECONDS, LEASE_SECONDS, Ledger, TableLedger
from shared.outbound import OutboundProcessor
from shared.settings import Settings
from shared.storage import DEFAULT_RETRY, QueueWriter, RetryPolicy, Storage
from shared.twilio_rest import TwilioApi
from shared.webhooks import Webhooks


@dataclass
class Runtime:
    settings: Settings
    credentials: CredentialCache
    webhooks: Webhooks
    storage: Storage
    twilio: TwilioApi
    processor: OutboundProcessor

    @classmethod
    def build(cls, settings: Settings, *, secret_client_factory: Callable[[], Any] | None = None,
              twilio_http_client: Any = None, ledger: Ledger | None = None,
              queues: QueueWriter | None = None, retry: RetryPolicy = DEFAULT_RETRY,
              lease_seconds: float = LEASE_SECONDS,
              attempt_seconds: float = ATTEMPT_SECONDS) -> Runtime:
        """The process's objects; `ledger` and `queues` replace the storage-backed ones
        (tests pass in-memory fakes); `retry`, `lease_seconds` and `attempt_seconds` scale
        time down for the fault suite."""
        # The Azure SDKs log every HTTP request at INFO: keep that out of App Insights.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(
            logging.WARNING)
        credentials = CredentialCache(source_for(settings, secret_client_factory),
                                      ttl_seconds=settings.secrets_ttl_seconds)
        storage = Storage(settings.storage, retry)
        twilio = TwilioApi(credentials, settings.api_base_url, twilio_http_client,
                           max_concurrency=settings.twilio_max_concurrency)
        ledger = ledger or TableLedger(lambda: storage.table(settings.jobs_table_name),
                                       lease_seconds=lease_seconds, retry=retry)
        queues = queues or storage
        processor = OutboundProcessor(settings, twilio, ledger, queues,
                                      attempt_seconds=attempt_seconds,
                                      settle_seconds=2 * twilio.http_client.timeout)
        return cls(settings, credentials, Webhooks(settings, credentials, ledger, queues),
                   storage, twilio, processor)

    async def sweep_ledger(self) -> retention.Sweep:
        """One retention run over the jobs table (the timer trigger's work)."""
        ledger = self.processor.ledger
        if not isinstance(ledger, TableLedger):
            raise TypeError("retention sweeps the Table Storage ledger only")
        return await retention.sweep(
            await ledger.table_client(),
            job_retention_seconds=self.settings.job_retention_days * 86400,
            effect_retention_seconds=self.settings.webhook_effect_retention_hours * 3600)

    async def close(self) -> None:
        await self.twilio.close()
        if isinstance(self.processor.ledger, TableLedger):
            await self.processor.ledger.close()
        await self.storage.close()


_current: Runtime | None = None


def get(env: Mapping[str, str] | None = None) -> Runtime:
    """The process's runtime, built from the environment on first call."""
    global _current
    if _current is None:
        _current = Runtime.build(Settings.from_env(env))
    return _current


def use(current: Runtime) -> None:
    """Make `current` the process's runtime (tests and benchmarks pass fakes this way)."""
    global _current
    _current = current


async def shutdown() -> None:
    """Close the process's sessions and forget the runtime (a worker shutting down)."""
    global _current
    if _current is not None:
        await _current.close()
    _current = None
