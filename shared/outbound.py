"""One outbound queue message, from text to a Twilio SID or an accounted-for dead letter.

- Not JSON, or not a valid job: not sent, moved to `<queue>-rejected` with the reason.
- Already sent (same key): not sent again (see `shared.ledger`).
- Twilio refuses it for good (a bad number, an opt-out ...): moved to `-rejected` with
  Twilio's code and message.
- Transient failure (429, 5xx, timeouts, resets, vault unavailable): a copy is enqueued
  with a growing delay; after `max_attempts` tries it goes to `<queue>-poison` with the
  last error beside it. Capacity errors wait longer.
Anything else raises, and the Functions host retries the message, then moves it to
`-poison` itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared import deadletters, jobs
from shared.failures import Failure, classify
from shared.jobs import Job, JobRejected
from shared.ledger import Ledger
from shared.settings import Settings
from shared.storage import QueueWriter
from shared.twilio_rest import Sent

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Delay before attempt n+1: base * 3**(n-1), capped. Capacity errors start higher.
RETRY_BASE_SECONDS = {"transient": 10, "capacity": 60}
RETRY_CAP_SECONDS = 900


@dataclass(frozen=True)
class QueueItem:
    id: str
    body: bytes | str
    dequeue_count: int = 1


@dataclass(frozen=True)
class Outcome:
    result: str  # sent, duplicate, in_progress, rejected, retry_scheduled, poisoned
    key: str | None = None
    sid: str | None = None
    reason: str | None = None


class Sender(Protocol):
    async def send(self, job: Job, from_number: str | None) -> Sent: ...



def retry_delay(kind: str, attempts: int) -> int:
    base = RETRY_BASE_SECONDS.get(kind, RETRY_BASE_SECONDS["transient"])
    return int(min(RETRY_CAP_SECONDS, base * 3 ** max(0, attempts - 1)))


class OutboundProcessor:
    def __init__(self, settings: Settings, sender: Sender, ledger: Ledger, queues: QueueWriter,
                 *, max_attempts: int = MAX_ATTEMPTS,
                 clock: Callable[[], float] = time.time,
                 delays: Callable[[str, int], int] = retry_delay) -> None:
        self.settings = settings
        self.sender = sender
        self.ledger = ledger
        self.queues = queues
        self.max_attempts = max_attempts
        self.clock = clock
        self.delays = delays

    async def process(self, item: QueueItem) -> Outcome:
        try:
            job = jobs.parse(item.body, clock=self.clock)
        except JobRejected as exc:
            return await self._reject(item, None, "invalid_job", str(exc))
        key = job.id or f"msg-{item.id}"
        try:  # sender, Messaging Service and callbacks from the settings
            outgoing = jobs.prepare(job, self.settings, key)
        except JobRejected as exc:
            kind = "no_sender" if isinstance(exc, jobs.NoSender) else "invalid_job"
            return await self._reject(item, key, kind, str(exc))

        claim = await self.ledger.claim(key, item.id)
        if claim.state == "done":
            log.info("job %s: already %s, message %s not sent again", key,
                     (claim.record or {}).get("status"), item.id)
            return Outcome("duplicate", key, (claim.record or {}).get("sid"))
        if claim.state == "busy":
            log.info("job %s: another delivery is sending it; message %s completed", key,
                     item.id)
            return Outcome("in_progress", key)
        if claim.state == "unknown":
            reason = ("a previous delivery stopped while sending; Twilio may have accepted it. "
                      "Check the Twilio console before sending it again under a new id")
            outcome = await self._reject(item, key, "outcome_unknown", reason)
            await self.ledger.record(key, status="unknown", last_error=reason)
            return outcome

        try:
            sent = await self.sender.send(outgoing, outgoing.from_)
        except Exception as exc:  # noqa: BLE001 - classified below, unknown ones re-raised
            failure = classify(exc)
            if failure is None:
                # A bug, not Twilio: release the claim so the host's retry can send.
                await self.ledger.record(key, status="retrying",
                                         last_error=f"{type(exc).__name__}")
                raise
            return await self._failed(item, job, key, claim.attempts, failure)

        await self.ledger.record(key, status="sent", sid=sent.sid, twilio_status=sent.status,
                                 last_error="")
        log.info("job %s: sent as %s (message %s, attempt %d)", key, sent.sid, item.id,
                 claim.attempts)
        return Outcome("sent", key, sent.sid)

    async def _failed(self, item: QueueItem, job: Job, key: str, attempts: int,
                      failure: Failure) -> Outcome:
        if not failure.retryable:
            outcome = await self._reject(item, key, "twilio_permanent", failure.reason,
                                         failure.twilio_code)
            await self.ledger.record(key, status="rejected", last_error=failure.reason,
                                     twilio_code=failure.twilio_code)
            return outcome
        if attempts >= self.max_attempts:
            await self._dead_letter(self.settings.poison_queue_name, item, key,
                                    "retries_exhausted", failure.reason, failure.twilio_code,
                                    attempts=attempts)
            await self.ledger.record(key, status="failed", last_error=failure.reason)
            return Outcome("poisoned", key, reason=failure.reason)
        # Release the claim first: if the copy below is never written, the host redelivers
        # this message and it can claim again.
        delay = self.delays(failure.kind, attempts)
        await self.ledger.record(key, status="retrying", last_error=failure.reason,
                                 twilio_code=failure.twilio_code)
        copy = json.dumps(jobs.to_dict(replace(job, id=key)), ensure_ascii=False)
        await self.queues.put(self.settings.outbound_queue_name, copy, delay_seconds=delay)
        log.warning("job %s: attempt %d failed (%s); retrying in %d s", key, attempts,
                    failure.reason, delay)
        return Outcome("retry_scheduled", key, reason=failure.reason)

    async def _reject(self, item: QueueItem, key: str | None, kind: str, reason: str,
                      twilio_code: int | None = None) -> Outcome:
        await self._dead_letter(self.settings.rejected_queue_name, item, key, kind, reason,
                                twilio_code)
        return Outcome("rejected", key, reason=reason)

    async def _dead_letter(self, queue: str, item: QueueItem, key: str | None, kind: str,
                           reason: str, twilio_code: int | None, **extra: Any) -> None:
        await self.queues.put(queue, deadletters.envelope(
            kind=kind, reason=reason, original=item.body, queue_message_id=item.id,
            job_key=key, twilio_code=twilio_code, dequeue_count=item.dequeue_count,
            at=self.clock(), **extra))
        deadletters.log_dead_letter(kind=kind, job_key=key, twilio_code=twilio_code,
                                    queue=queue, reason=reason)
