"""One outbound queue message, from text to a Twilio SID or an accounted-for dead letter.

- Not JSON, or not a valid job: not sent, moved to `<queue>-rejected` with the reason.
- Already sent (same key): not sent again (see `shared.ledger`).
- Twilio refuses it for good (a bad number, an opt-out ...): moved to `-rejected` with
  Twilio's code and message.
- Transient failure (5xx, timeouts, resets, vault unavailable, an answer that cannot be
  read): a copy is enqueued with a growing, jittered delay; after `max_attempts` tries it
  goes to `<queue>-poison` with the last error beside it. Capacity errors wait longer.
- Throttled (429 / 20429: the account has too many requests in flight): retried inside the
  invocation (`shared.twilio_rest`), then re-queued with a jittered delay. Throttling never
  uses up the job's attempts; a job still throttled `THROTTLE_DEADLINE_SECONDS` after its
  first 429 goes to `-poison` as `throttled`.
Whatever a message holds, it ends in exactly one of those places with a reason. Only a
storage failure (the outcome cannot be written) raises: the Functions host then delivers the
message again, and the ledger row lets it continue.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared import deadletters, jobs, redaction
from shared.failures import Failure, classify
from shared.jobs import Job, JobRejected
from shared.ledger import ATTEMPT_SECONDS, Claim, ClaimLost, Ledger
from shared.settings import Settings
from shared.storage import QueueWriter
from shared.twilio_rest import (
    REQUEST_TIMEOUT_SECONDS,
    THROTTLE_BUDGET_SECONDS,
    Sent,
    throttle_budget,
)

log = redaction.logger(__name__)  # phone numbers masked

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
# Throttled requests are retried inside one attempt for at most THROTTLE_BUDGET_SECONDS in
# all: the look at Twilio and the send (each up to the request timeout) and these waits end
# within ATTEMPT_SECONDS, so inside the claim's lease.
# A job throttled past the in-invocation budget comes back after a delay growing from BASE
# to CAP with the streak of throttled attempts, jittered (never less than Retry-After).
THROTTLE_DELAY_BASE_SECONDS = 5
THROTTLE_DELAY_CAP_SECONDS = 300


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


def jitter(delay: float) -> int:
    """`delay` spread by +-20%: copies failed in the same second do not all return in one."""
    return max(1, round(delay * random.uniform(0.8, 1.2)))


def throttle_delay(streak: int, retry_after: float | None, rng: random.Random) -> int:
    """Delay before a throttled job's next attempt: 5 s, 10 s, 20 s ... up to 5 minutes,
    jittered by +-50%, never under Twilio's Retry-After."""
    base = min(THROTTLE_DELAY_CAP_SECONDS, THROTTLE_DELAY_BASE_SECONDS * 2 ** max(0, streak - 1))
    wait: float = max(retry_after or 0.0, base * rng.uniform(0.5, 1.5))
    return max(1, math.ceil(wait))


class OutboundProcessor:
    def __init__(self, settings: Settings, sender: Sender, ledger: Ledger, queues: QueueWriter,
                 *, max_attempts: int = MAX_ATTEMPTS,
                 clock: Callable[[], float] = time.time,
                 delays: Callable[[str, int], int] = retry_delay,
                 spread: Callable[[float], int] = jitter,
                 rng: random.Random | None = None,
                 attempt_seconds: float = ATTEMPT_SECONDS,
                 settle_seconds: float = SETTLE_SECONDS,
                 throttle_budget_seconds: float = THROTTLE_BUDGET_SECONDS) -> None:
        self.settings = settings
        self.sender = sender
        self.ledger = ledger
        self.queues = queues
        self.max_attempts = max_attempts
        self.clock = clock
        self.delays = delays
        self.spread = spread
        self.rng = rng or random.Random()
        self.attempt_seconds = attempt_seconds
        self.settle_seconds = settle_seconds
        self.throttle_budget_seconds = throttle_budget_seconds

    async def process(self, item: QueueItem) -> Outcome:
        """Raises only when the outcome could not be written (storage unreachable): the
        host then delivers the message again, and the ledger row lets it continue."""
        try:
            job = jobs.parse(item.body, clock=None)  # send_at's window: after the claim
        except JobRejected as exc:
            return await self._reject(item, jobs.claimed_id(item.body), "invalid_job", str(exc))
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
                with throttle_budget(self.throttle_budget_seconds):
                    found = await self._look_up(outgoing, claim)
            except Exception as exc:  # noqa: BLE001 - every failure is classified
                failure = classify(exc)
                # Twilio did not answer promptly, so it may still be holding our request:
                # the next look waits the settle time again, and an earlier "not found"
                # no longer counts.
                return await self._failed(item, job, claim, replace(
                    failure, reason=f"could not check at Twilio whether an earlier attempt "
                                    f"was sent: {failure.reason}", ambiguous=False,
                    kind="transient" if failure.kind == "permanent" else failure.kind),
                    settle=failure.kind != "throttled")
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
        except JobRejected as exc:
            return await self._failed(item, job, claim, classify(exc), checked=note is not None)
        try:
            with throttle_budget(self.throttle_budget_seconds):
                sent = await self.sender.send(outgoing, outgoing.from_)
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            return await self._failed(item, job, claim, classify(exc, sending=True),
                                      checked=note is not None)

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
        # Always at Twilio, by the job's recipient, sender and text: a status callback's SID
        # on the row (`callback_sid`) is not proof, as a captured callback re-aimed at
        # another job's URL (Twilio's signature does not separate the URL from the form)
        # could put one there and have an unsent job marked sent.
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
        key, record = claim.key, claim.record or {}
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
        if failure.kind == "throttled":
            return await self._throttled(item, job, claim, failure, since)
        ambiguous = int(record.get("ambiguous") or 0) + failure.ambiguous
        # Throttled attempts do not count: Twilio never processed them.
        attempts = claim.attempts - int(record.get("throttled") or 0)
        if attempts >= self.max_attempts:
            return await self._give_up(item, claim, failure, since, "retries_exhausted",
                                       ambiguous=ambiguous)
        # Release the claim first: if the copy below is never written, the host redelivers
        # this message and it can claim again.
        delay = self.spread(self.delays(failure.kind, attempts))
        if failure.ambiguous or settle:
            # A request we gave up on may still reach Twilio: look only once it cannot.
            delay = max(delay, int(self.settle_seconds))
        await self.ledger.update(claim, status="retrying", last_error=failure.reason,
                                 twilio_code=failure.twilio_code, check_since=since,
                                 absent_at=_cleared(record, "absent_at"),
                                 throttled_since=_cleared(record, "throttled_since"),
                                 ambiguous=ambiguous, retry_at=self.clock() + delay)
        await self._requeue(job, key, delay)
        log.warning("job %s: attempt %d failed (%s); retrying in %d s", key, attempts,
                    failure.reason, delay)
        return Outcome("retry_scheduled", key, reason=failure.reason)

    async def _throttled(self, item: QueueItem, job: Job, claim: Claim, failure: Failure,
                         since: float) -> Outcome:
        """Twilio turned the request away for load past the in-invocation budget: come back
        later, without using up an attempt, until the throttle deadline."""
        key, record, now = claim.key, claim.record or {}, self.clock()
        started = float(record.get("throttled_since") or 0.0) or now
        throttled = int(record.get("throttled") or 0) + 1
        if now - started >= self.settings.throttle_deadline_seconds:
            reason = (f"Twilio kept refusing for load for {(now - started) / 60:.0f} min "
                      f"(THROTTLE_DEADLINE_SECONDS); last: {failure.reason}")
            return await self._give_up(item, claim, replace(failure, reason=reason), since,
                                       "throttled", throttled=throttled)
        streak = int(record.get("throttle_streak") or 0) + 1 if record.get("throttled_since") \
            else 1
        delay = throttle_delay(streak, failure.retry_after, self.rng)
        await self.ledger.update(claim, status="retrying", last_error=failure.reason,
                                 twilio_code=failure.twilio_code, check_since=since,
                                 throttled=throttled, throttled_since=started,
                                 throttle_streak=streak, retry_at=now + delay)
        await self._requeue(job, key, delay)
        log.info("job %s: throttled by Twilio (%d in a row); trying again in %d s", key,
                 streak, delay)
        return Outcome("retry_scheduled", key, reason=failure.reason)

    async def _give_up(self, item: QueueItem, claim: Claim, failure: Failure, since: float,
                       kind: str, **fields: Any) -> Outcome:
        """To -poison. If an attempt may still have reached Twilio, say so."""
        kind = "outcome_unknown" if since else kind
        attempts = claim.attempts - int((claim.record or {}).get("throttled") or 0)
        # An outcome_unknown letter says since when to look at Twilio: a replay still knows
        # it after retention has deleted the row.
        extra = {"check_since": since} if since else {}
        await self._dead_letter(self.settings.poison_queue_name, item, claim.key, kind,
                                failure.reason, failure.twilio_code, attempts=attempts,
                                **extra)
        await self.ledger.update(claim, status="unknown" if since else "failed",
                                 last_error=failure.reason, **fields)
        return Outcome("poisoned", claim.key, reason=failure.reason)

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
        reason = jobs.printable(reason)  # a producer's lone surrogate, quoted, is no crash
        await self.queues.put(queue, deadletters.envelope(
            kind=kind, reason=reason, original=item.body, queue_message_id=item.id,
            job_key=key, twilio_code=twilio_code, dequeue_count=item.dequeue_count,
            at=self.clock(), **extra))
        deadletters.log_dead_letter(kind=kind, job_key=key, twilio_code=twilio_code,
                                    queue=queue, reason=reason)


def _cleared(record: dict[str, Any], name: str, empty: Any = 0.0) -> Any:
    """`empty` to clear a field the row has, None (leave out of the merge) if it has none."""
    return empty if record.get(name) else None
