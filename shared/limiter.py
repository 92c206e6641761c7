"""How many Twilio REST requests one instance has in flight: an adaptive window (AIMD).

Twilio limits the concurrent REST requests of an account and answers the excess with HTTP 429
(error 20429). Each instance keeps its requests under a window that starts at the ceiling
(`TWILIO_MAX_CONCURRENCY`), shrinks to three quarters on a 429 (at most once per two round
trips, so one burst of refusals counts once) and grows back by one request per second of
successes. Several instances sharing an account then settle near the account's limit
instead of storming it, as TCP connections settle on a link's capacity. The growth is per
second, not per round trip as in TCP: every 429 costs its request Twilio's `Retry-After` (a
second or more), so probing above the limit twenty times a second would cost more than the
little it finds.

The window's state and its 429 count are logged as one WARNING line a minute while the
account is throttling (`twilio_throttle ...`, key=value for a Kusto `parse`), and once more
when the window is back at its ceiling: the lines an operator charts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from shared import redaction

log = redaction.logger("shared.limiter")  # phone numbers masked

LOG_PREFIX = "twilio_throttle"
REPORT_SECONDS = 60.0


class Slot:
    """One request's place in the window; says how the request went."""

    __slots__ = ("outcome", "started")

    def __init__(self, started: float = 0.0) -> None:
        self.outcome = "other"  # "ok", "throttled", or "other" (an error: no signal)
        self.started = started

    def ok(self) -> None:
        self.outcome = "ok"

    def throttled(self) -> None:
        self.outcome = "throttled"


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, clock: Callable[[], float] = time.monotonic,
                 decrease: float = 0.75, increase_per_second: float = 1.0,
                 max_cooldown_seconds: float = 1.0, min_cooldown_seconds: float = 0.05,
                 report_seconds: float = REPORT_SECONDS) -> None:
        if ceiling < 1:
            raise ValueError("the ceiling must be at least 1")
        self.ceiling = ceiling
        self.window = float(ceiling)
        self.in_flight = 0
        self.requests = 0  # since start: answered requests
        self.throttled = 0  # since start: 429s
        self._clock = clock
        self._decrease = decrease
        self._increase = increase_per_second
        self._cooldown_bounds = (min_cooldown_seconds, max_cooldown_seconds)
        self._round_trip = 0.0  # smoothed duration of a successful request
        self._last_cut = float("-inf")
        self._grown_at = clock()
        self._report = report_seconds
        self._reported_at = clock()
        self._period_throttled = 0
        self._period_requests = 0
        self._period_waited = 0.0
        self._low_since_report = False
        self._changed: asyncio.Condition | None = None
        self._waiting = 0  # requests waiting for a place

    @property
    def limit(self) -> int:
        return max(1, int(self.window))

    async def acquire(self, timeout: float | None = None) -> Slot:
        """A place in the window for one request, waiting while the window is full; after
        `timeout` seconds of waiting, TimeoutError (nothing was sent). `release` it."""
        started = self._clock()
        if self.in_flight < self.limit and not self._waiting:
            # The common case: a place is free and nobody is before us (one event loop, so
            # nothing runs between the test and the count).
            self.in_flight += 1
            return Slot(started)
        changed = self._condition()
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout), changed:
                await changed.wait_for(lambda: self.in_flight < self.limit)
                self.in_flight += 1
        finally:
            self._waiting -= 1
        now = self._clock()
        self._period_waited += now - started
        return Slot(now)

    async def release(self, slot: Slot) -> None:
        self.in_flight -= 1
        self._record(slot)
        if self._waiting:
            changed = self._condition()
            async with changed:
                changed.notify(max(0, self.limit - self.in_flight))
        self._maybe_report()

    @asynccontextmanager
    async def slot(self, timeout: float | None = None) -> AsyncIterator[Slot]:
        slot = await self.acquire(timeout)
        try:
            yield slot
        finally:
            await self.release(slot)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made inside the running loop
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def cooldown(self) -> float:
        """How long after a cut further 429s are taken as the same burst: two round trips
        (the refusals of requests sent before the cut are still arriving), within bounds."""
        low, high = self._cooldown_bounds
        return min(high, max(low, 2 * self._round_trip))

    def _record(self, slot: Slot) -> None:
        now, outcome = self._clock(), slot.outcome
        if outcome == "ok":
            self.requests += 1
            self._period_requests += 1
            sample = now - slot.started
            self._round_trip = sample if not self._round_trip else \
                0.8 * self._round_trip + 0.2 * sample
            if self.window < self.ceiling:
                grown = (now - self._grown_at) * self._increase
                self.window = min(float(self.ceiling), self.window + grown)
            self._grown_at = now
        elif outcome == "throttled":
            self.requests += 1
            self.throttled += 1
            self._period_requests += 1
            self._period_throttled += 1
            if now - self._last_cut >= self.cooldown:
                self.window = max(1.0, self.window * self._decrease)
                self._last_cut = self._grown_at = now
        if self.window < self.ceiling:
            self._low_since_report = True

    def _maybe_report(self) -> None:
        now = self._clock()
        if now - self._reported_at < self._report:
            return
        if self._period_throttled or self._low_since_report:
            log.warning("%s window=%.1f ceiling=%d in_flight=%d requests=%d throttled=%d "
                        "waited_s=%.1f period_s=%.0f", LOG_PREFIX, self.window, self.ceiling,
                        self.in_flight, self._period_requests, self._period_throttled,
                        self._period_waited, now - self._reported_at)
        self._reported_at = now
        self._period_requests = self._period_throttled = 0
        self._period_waited = 0.0
        # Reported once more after it recovers, so the chart shows the window back up.
        self._low_since_report = self.window < self.ceiling
