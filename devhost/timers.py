"""Timer triggers as the Functions host runs them, for the dev host.

- Schedules are NCRONTAB with six fields, `{second} {minute} {hour} {day} {month}
  {day-of-week}` (the NCrontab library's reading, as Azure Functions documents it): numbers,
  `*`, ranges `a-b`, lists `a,b`, steps `*/n`, `a-b/n` and `a/n`; months and days also by
  English name or its first three letters or more (`Jan`, `Monday`), case-insensitive;
  days of the week 0-6 from Sunday. A day must match both the day and the day-of-week fields
  (NCrontab's rule; classic cron takes either). Times are UTC (Flex Consumption has no
  `WEBSITE_TIME_ZONE`).
- One invocation at a time per function, and one runner per function among all dev hosts on
  this machine serving the same storage (the real host holds a storage lock: a timer is a
  singleton across scaled-out instances); another host takes over when the holder stops.
- `run_on_startup`, and `use_monitor` (default: on for schedules a minute or more apart):
  the last and next occurrences are kept, so an occurrence missed while no host ran is run
  at start with `past_due` true. The function gets an `azure.functions.TimerRequest`.
- A failed invocation is logged and not retried: the next one is the next occurrence.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("devhost")
UTC = dt.UTC
FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31),
          ("month", 1, 12), ("day-of-week", 0, 6))
MONTHS = [m.lower() for m in calendar.month_name[1:]]
DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
# Long enough for the rarest real schedule (29 February on a given weekday: 28 years).
SEARCH_YEARS = 30
HOW_TO = "{second} {minute} {hour} {day} {month} {day-of-week}, e.g. '0 */5 * * * *'"


class ScheduleError(ValueError):
    """A schedule the Functions host would refuse; the message names the field."""


def _number(text: str, name: str, low: int, high: int) -> int:
    names = MONTHS if name == "month" else DAYS if name == "day-of-week" else []
    word = text.lower()
    if names and len(word) >= 3 and word.isalpha():
        found = [i for i, n in enumerate(names) if n.startswith(word)]
        if found:
            return found[0] + (1 if name == "month" else 0)
    if not text.isdigit():
        raise ScheduleError(f"{name} {text!r} is not a number" +
                            (" or a name" if names else "") + f" ({low}-{high})")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{name} {value} is out of range {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        part, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{name} step {step_text!r} is not a positive number")
            step = int(step_text)
        if part == "*":
            first, last = low, high
        elif "-" in part:
            a, _, b = part.partition("-")
            first, last = _number(a, name, low, high), _number(b, name, low, high)
            if first > last:
                raise ScheduleError(f"{name} range {part!r} runs backwards")
        else:
            first = _number(part, name, low, high)
            last = high if step_text else first  # `a/n`: from a to the end, every n
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split()
        if re.fullmatch(r"\d+(\.\d+)?:\d\d:\d\d", expression.strip()):
            raise ScheduleError(f"{expression!r} is a TimeSpan, which only App Service plans "
                                f"run (not Flex Consumption): write it as NCRONTAB, {HOW_TO}")
        if len(parts) != 6:
            hint = " (cron's five fields lack the seconds: put '0 ' in front)" \
                if len(parts) == 5 else ""
            raise ScheduleError(f"{expression!r} has {len(parts)} fields, NCRONTAB has six: "
                                f"{HOW_TO}{hint}")
        sets = [_field(p, *f) for p, f in zip(parts, FIELDS, strict=True)]
        cron = cls(expression, *sets)
        if cron.next_after(dt.datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise ScheduleError(f"{expression!r} never occurs (no such day)")
        return cron

    def _day_matches(self, t: dt.datetime) -> bool:
        # isoweekday: Monday 1 ... Sunday 7; NCRONTAB: Sunday 0.
        return t.day in self.days and t.isoweekday() % 7 in self.weekdays

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first occurrence strictly after `after` (aware, UTC), or None within
        SEARCH_YEARS."""
        t = after.astimezone(UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        end = t.replace(year=t.year + SEARCH_YEARS, month=1, day=1)
        while t < end:
            if t.month not in self.months:
                t = (t.replace(day=28) + dt.timedelta(days=4)).replace(
                    day=1, hour=0, minute=0, second=0)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + dt.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + dt.timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += dt.timedelta(seconds=1)
            else:
                return t
        return None

    def monitored_by_default(self, now: dt.datetime) -> bool:
        """`use_monitor` unset: on when occurrences are a minute or more apart."""
        first = self.next_after(now)
        second = self.next_after(first) if first else None
        return first is None or second is None or (second - first) >= dt.timedelta(minutes=1)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).isoformat()


@dataclass
class Status:
    """What the real host's schedule monitor keeps: the last and next occurrences."""

    last: dt.datetime
    next: dt.datetime
    last_updated: dt.datetime

    def as_dict(self) -> dict[str, str]:
        return {"Last": _iso(self.last), "Next": _iso(self.next),
                "LastUpdated": _iso(self.last_updated)}


class StateFiles:
    """Where the timers' locks and statuses live: one folder per machine and user, names
    keyed by the storage the hosts serve (as the real host keys them by host id)."""

    def __init__(self, folder: Path, storage_identity: str) -> None:
        self.folder = folder
        self.key = hashlib.sha256(storage_identity.encode()).hexdigest()[:16]

    def path(self, function: str, suffix: str) -> Path:
        return self.folder / f"{self.key}.{function}.{suffix}"

    def read_status(self, function: str) -> Status | None:
        try:
            doc = json.loads(self.path(function, "status.json").read_text())
            return Status(*(dt.datetime.fromisoformat(doc[k])
                            for k in ("Last", "Next", "LastUpdated")))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or unreadable: start afresh, as the host does

    def write_status(self, function: str, status: Status) -> None:
        path = self.path(function, "status.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status.as_dict()))
        os.replace(tmp, path)

    @contextlib.contextmanager
    def try_lock(self, function: str) -> Iterator[bool]:
        """The function's singleton lock, if free (True while held). The kernel frees it
        when its holder ends, however it ends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = self.path(function, "lock").open("a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            handle.close()


Invoke = Callable[[Any], Awaitable[Any]]
Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[Any]]


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class TimerFunction:
    name: str
    cron: Cron
    run_on_startup: bool
    use_monitor: bool


async def run_timer(timer: TimerFunction, invoke: Invoke, state: StateFiles, *,
                    clock: Clock = _now, sleep: Sleep = asyncio.sleep,
                    lock_poll_seconds: float = 5.0) -> None:
    """Run `timer` until cancelled, once this process holds its singleton lock."""
    waiting_said = False
    while True:
        with state.try_lock(timer.name) as held:
            if held:
                if waiting_said:
                    log.info("timer %s: the other host stopped; running it here", timer.name)
                await _run_schedule(timer, invoke, state, clock, sleep)
        if not waiting_said:
            log.info("timer %s: another dev host on this storage runs it; taking over if it "
                     "stops", timer.name)
            waiting_said = True
        await sleep(lock_poll_seconds)


async def _run_schedule(timer: TimerFunction, invoke: Invoke, state: StateFiles,
                        clock: Clock, sleep: Sleep) -> None:
    from azure.functions.timer import TimerRequest

    now = clock()
    status = state.read_status(timer.name) if timer.use_monitor else None
    if status is not None and timer.cron.next_after(status.next - dt.timedelta(seconds=1)) \
            != status.next:
        status = None  # kept under another schedule: start this one afresh
    past_due = status is not None and status.next < now
    if status is None:
        status = Status(dt.datetime.min.replace(tzinfo=UTC), _next(timer, now),
                        dt.datetime.min.replace(tzinfo=UTC))
    startup = past_due or timer.run_on_startup
    while True:
        if not startup:
            await sleep(max(0.0, (status.next - clock()).total_seconds()))
        started = clock()
        request = TimerRequest(past_due=past_due,
                               schedule_status=status.as_dict() if timer.use_monitor else {},
                               schedule={"AdjustForDST": True})
        reason = "past due" if past_due else "on start-up" if startup else "scheduled"
        log.info("timer %s: running (%s)", timer.name, reason)
        try:
            await invoke(request)
        except Exception as exc:  # noqa: BLE001 - the host's contract: log, next occurrence
            log.warning("timer %s failed: %s: %s; next run as scheduled", timer.name,
                        type(exc).__name__, exc)
        # Early by a clock tick: count from the occurrence, or it would run twice.
        base = status.next if not startup and status.next > started else started
        status = Status(base, _next(timer, base), base)
        if timer.use_monitor:
            state.write_status(timer.name, status)
        startup = past_due = False


def _next(timer: TimerFunction, after: dt.datetime) -> dt.datetime:
    found = timer.cron.next_after(after)
    if found is None:  # parse() refuses a schedule with no occurrence
        raise ScheduleError(f"timer {timer.name}: {timer.cron.expression!r} has no next "
                            "occurrence")
    return found
