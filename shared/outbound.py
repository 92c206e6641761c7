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

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared import deadletters, jobs
from shared.failures import Failure, classify
from shared.jobs import Job, JobRejected
from shared.ledger import ATTEMPT_SECONDS, Claim, ClaimLost, Ledger
from shared.settings import Settings
from shared.storage import QueueWriter
from shared.twilio_rest import REQUEST_TIMEOUT_SECONDS, Sent

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Delay before attempt n+1: base * 3**(n-1), capped. Capacity errors start higher.
RETRY_BASE_SECONDS = {"transient": 10, "capacity": 60}
RETRY_CAP_SECONDS = 900
# A job whose key another delivery holds is looked at again this long after that claim's
# lease ends.
BUSY_RECHECK_MARGIN_SECONDS = 5
# After a Twilio request timed out or broke, the retry (which first looks at Twilio for
# the message or call) waits at least this long: twice the request timeout, so that a
# request still on its way has landed by then. A look that finds nothing is repeated this
# long after it before anything is sent: a Twilio that stalled with our request in its
# queue answers a list as soon as it wakes, while that create is still being made.
SETTLE_SECONDS = 2 * REQUEST_TIMEOUT_SECONDS


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
    async def find(self, job: Job, from_number: str | None, since: float) -> Sent | None: ...


def retry_delay(kind: str, attempts: int) -> int:
    base = RETRY_BASE_SECONDS.get(kind, RETRY_BASE_SECONDS["transient"])
    return int(min(RETRY_CAP_SECONDS, base * 3 ** max(0, attempts - 1)))


class OutboundProcessor:
    def __init__(self, settings: Settings, sender: Sender, ledger: Ledger, queues: QueueWriter,
                 *, max_attempts: int = MAX_ATTEMPTS,
                 clock: Callable[[], float] = time.time,
                 delays: Callable[[str, int], int] = retry_delay,
                 attempt_seconds: float = ATTEMPT_SECONDS,
                 settle_seconds: float = SETTLE_SECONDS) -> None:
        self.settings = settings
        self.sender = sender
        self.ledger = ledger
        self.queues = queues
        self.max_attempts = max_attempts
        self.clock = clock
        self.delays = delays
        self.attempt_seconds = attempt_seconds
        self.settle_seconds = settle_seconds

    async def process(self, item: QueueItem) -> Outcome:
        """Raises only when the outcome could not be written (storage unreachable): the
        host then delivers the message again, and the ledger row lets it continue."""
        try:
            job = jobs.parse(item.body, clock=None)  # send_at's window: after the claim
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
            # Another delivery holds a live claim. Come back when its lease has run out: by
            # then it is sent (nothing to do) or its sender died (this copy takes over).
            delay = int(claim.wait_seconds) + BUSY_RECHECK_MARGIN_SECONDS
            await self._requeue(job, key, delay)
            log.info("job %s: another delivery is sending it; message %s checks again in %d s",
                     key, item.id, delay)
            return Outcome("in_progress", key)
        try:
            async with asyncio.timeout(self.attempt_seconds):
                return await self._attempt(item, job, outgoing, claim)
        except ClaimLost as exc:
            # Our attempt outlived its lease and another delivery took over: that one checks
            # at Twilio before it sends, so nothing is lost or sent twice.
            log.error("job %s: %s; message %s leaves it to that delivery", key, exc, item.id)
            return Outcome("in_progress", key)

    async def _attempt(self, item: QueueItem, job: Job, outgoing: Job,
                       claim: Claim) -> Outcome:
        """`job` as the producer wrote it (what a retry re-enqueues); `outgoing` as it is
        sent (sender, Messaging Service and callbacks filled in)."""
        key = claim.key
        record = claim.record or {}
        note = None
        if claim.check_since:
            # An earlier attempt may have reached Twilio: look before sending again.
            try:
                found = await self._look_up(outgoing, claim)
            except Exception as exc:  # noqa: BLE001 - classified, unknown ones re-raised
                failure = classify(exc)
                if failure is None:
                    raise
                # Twilio did not answer promptly, so it may still be holding our request:
                # the next look waits the settle time again, and an earlier "not found"
                # no longer counts.
                return await self._failed(item, job, claim, replace(
                    failure, reason=f"could not check at Twilio whether an earlier attempt "
                                    f"was sent: {failure.reason}", ambiguous=False,
                    kind="transient" if failure.kind == "permanent" else failure.kind),
                    settle=True)
            if found is not None:
                await self.ledger.update(claim, status="sent", sid=found.sid,
                                         twilio_status=found.status, check_since=0.0,
                                         absent_at=_cleared(record, "absent_at"),
                                         reconciled=f"found {found.sid} at Twilio")
                log.info("job %s: an earlier attempt was sent as %s (found at Twilio)", key,
                         found.sid)
                return Outcome("sent", key, found.sid, reason="found at Twilio")
            first_miss = float(record.get("absent_at") or 0.0)
            waited = self.clock() - first_miss
            if not first_miss or waited < self.settle_seconds:
                return await self._look_again(job, claim, first_miss or self.clock())
            note = (f"nothing found at Twilio in two looks {waited:.0f} s apart; "
                    f"sent again")

        try:
            jobs.check_schedule(outgoing, self.clock())
            sent = await self.sender.send(outgoing, outgoing.from_)
        except Exception as exc:  # noqa: BLE001 - classified below, unknown ones re-raised
            failure = classify(exc)
            if failure is None:
                # A bug, not Twilio: release the claim so the host's retry can send.
                await self.ledger.update(claim, status="retrying",
                                         last_error=type(exc).__name__)
                raise
            return await self._failed(item, job, claim, failure, checked=note is not None)

        # Only what changes: a first attempt's row has no error or check to clear.
        had_check = bool(claim.check_since or record.get("check_since"))
        await self.ledger.update(claim, status="sent", sid=sent.sid, twilio_status=sent.status,
                                 last_error=_cleared(record, "last_error", ""),
                                 check_since=0.0 if had_check else None,
                                 absent_at=_cleared(record, "absent_at"), reconciled=note)
        log.info("job %s: sent as %s (message %s, attempt %d)", key, sent.sid, item.id,
                 claim.attempts)
        return Outcome("sent", key, sent.sid)

    async def _look_up(self, outgoing: Job, claim: Claim) -> Sent | None:
        record = claim.record or {}
        # Our status route writes the SID of every callback it gets for a job.
        if record.get("callback_sid"):
            return Sent(str(record["callback_sid"]), record.get("twilio_status"))
        return await self.sender.find(outgoing, outgoing.from_, claim.check_since)

    async def _look_again(self, job: Job, claim: Claim, first_miss: float) -> Outcome:
        """Nothing found at Twilio yet: look once more a settle time after the first look
        that found nothing, and only then send. Not a failure: no error is recorded."""
        delay = max(1, math.ceil(first_miss + self.settle_seconds - self.clock()))
        await self.ledger.update(claim, status="retrying", absent_at=first_miss,
                                 retry_at=self.clock() + delay)
        await self._requeue(job, claim.key, delay)
        log.info("job %s: nothing found at Twilio yet; looking once more in %d s before "
                 "sending", claim.key, delay)
        return Outcome("retry_scheduled", claim.key,
                       reason="nothing found at Twilio yet; looking once more")

    async def _failed(self, item: QueueItem, job: Job, claim: Claim, failure: Failure, *,
                      checked: bool = False, settle: bool = False) -> Outcome:
        key, attempts = claim.key, claim.attempts
        # Since when Twilio may hold a message from this job: kept until a check has looked.
        since = 0.0 if checked else claim.check_since
        if failure.ambiguous:
            since = min(since, claim.claimed_at) if since else claim.claimed_at
        if not failure.retryable:
            outcome = await self._reject(item, key, failure.letter_kind, failure.reason,
                                         failure.twilio_code)
            await self.ledger.update(claim, status="rejected", last_error=failure.reason,
                                     twilio_code=failure.twilio_code, check_since=0.0)
            return outcome
        ambiguous = int((claim.record or {}).get("ambiguous") or 0) + failure.ambiguous
        if attempts >= self.max_attempts:
            # Given up. If an attempt may still have reached Twilio, say so.
            kind = "outcome_unknown" if since else "retries_exhausted"
            await self._dead_letter(self.settings.poison_queue_name, item, key, kind,
                                    failure.reason, failure.twilio_code, attempts=attempts)
            await self.ledger.update(claim, status="unknown" if since else "failed",
                                     last_error=failure.reason, ambiguous=ambiguous)
            return Outcome("poisoned", key, reason=failure.reason)
        # Release the claim first: if the copy below is never written, the host redelivers
        # this message and it can claim again.
        delay = self.delays(failure.kind, attempts)
        if failure.ambiguous or settle:
            # A request we gave up on may still reach Twilio: look only once it cannot.
            delay = max(delay, int(self.settle_seconds))
        await self.ledger.update(claim, status="retrying", last_error=failure.reason,
                                 twilio_code=failure.twilio_code, check_since=since,
                                 absent_at=_cleared(claim.record or {}, "absent_at"),
                                 ambiguous=ambiguous, retry_at=self.clock() + delay)
        await self._requeue(job, key, delay)
        log.warning("job %s: attempt %d failed (%s); retrying in %d s", key, attempts,
                    failure.reason, delay)
        return Outcome("retry_scheduled", key, reason=failure.reason)

    async def _requeue(self, job: Job, key: str, delay: int) -> None:
        copy = json.dumps(jobs.to_dict(replace(job, id=key)), ensure_ascii=False)
        await self.queues.put(self.settings.outbound_queue_name, copy, delay_seconds=delay)

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


def _cleared(record: dict[str, Any], name: str, empty: Any = 0.0) -> Any:
    """`empty` to clear a field the row has, None (leave out of the merge) if it has none."""
    return empty if record.get(name) else None
