"""The dev host runs timer triggers as the Functions host does: NCRONTAB schedules (six
fields, seconds first), `run_on_startup`, `use_monitor` (a missed occurrence runs past due),
one invocation at a time, and one host at a time per function. Time is virtual: a day of
schedule runs in milliseconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devhost.host import DevHost, HostError
from devhost.services import free_port
from devhost.timers import Cron, ScheduleError

UTC = dt.UTC
FRIDAY = dt.datetime(2026, 12, 4, 18, 55, 0, tzinfo=UTC)


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("0 */5 * * * *", FRIDAY, "2026-12-04T19:00:00+00:00"),
    ("0 */5 * * * *", FRIDAY.replace(second=1), "2026-12-04T19:00:00+00:00"),
    ("0 0 */2 * * *", FRIDAY, "2026-12-04T20:00:00+00:00"),
    ("0 0 9-17 * * *", FRIDAY, "2026-12-05T09:00:00+00:00"),
    ("0 30 9 * * 1-5", FRIDAY + dt.timedelta(hours=16), "2026-12-07T09:30:00+00:00"),
    ("0 30 9 * Jan Mon", FRIDAY, "2027-01-04T09:30:00+00:00"),
    ("5,8,10 * * * * *", FRIDAY.replace(second=8), "2026-12-04T18:55:10+00:00"),
    ("5-7 * * * * *", FRIDAY.replace(second=7), "2026-12-04T18:56:05+00:00"),
    ("0 0 12 1/10 * *", dt.datetime(2026, 12, 21, 12, tzinfo=UTC), "2026-12-31T12:00:00+00:00"),
    ("0 0 3 * * sunday", FRIDAY, "2026-12-06T03:00:00+00:00"),
    ("0 0 0 1 JANUARY,jul *", FRIDAY, "2027-01-01T00:00:00+00:00"),
    ("0 0 0 29 2 *", FRIDAY, "2028-02-29T00:00:00+00:00"),
    # NCrontab: the day must match both fields (classic cron would take either).
    ("0 0 0 13 * Fri", FRIDAY, "2027-08-13T00:00:00+00:00"),
])
def test_next_occurrence(schedule: str, after: dt.datetime, expected: str) -> None:
    found = Cron.parse(schedule).next_after(after)
    assert found is not None and found.isoformat() == expected


@pytest.mark.parametrize(("schedule", "message"), [
    ("*/5 * * * *", "'*/5 * * * *' has 5 fields, NCRONTAB has six: {second} {minute} {hour} "
     "{day} {month} {day-of-week}, e.g. '0 */5 * * * *' (cron's five fields lack the seconds: "
     "put '0 ' in front)"),
    ("00:05:00", "'00:05:00' is a TimeSpan, which only App Service plans run (not Flex "
     "Consumption): write it as NCRONTAB, {second} {minute} {hour} {day} {month} "
     "{day-of-week}, e.g. '0 */5 * * * *'"),
    ("0 61 * * * *", "minute 61 is out of range 0-59"),
    ("0 0 0 * * 7", "day-of-week 7 is out of range 0-6"),
    ("0 0 0 * Foo *", "month 'Foo' is not a number or a name (1-12)"),
    ("0 0 17-9 * * *", "hour range '17-9' runs backwards"),
    ("*/0 * * * * *", "second step '0' is not a positive number"),
    ("0 0 0 31 2 *", "'0 0 0 31 2 *' never occurs (no such day)"),
])
def test_a_schedule_the_host_would_refuse_says_why(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Cron.parse(schedule)
    assert str(caught.value) == message


class VirtualTime:
    """The clock and sleep a DevHost is given: sleeping moves the clock, at once."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def clock(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


Call = tuple[str, bool, dt.datetime, dt.datetime]  # host, past_due, started, ended


def timer_app(schedule: str, calls: list[Call], host: str, vt: VirtualTime, *,
              seconds: float = 0.0, fail: bool = False, **options: Any) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule=schedule, **options)
    async def cleanup(timer: func.TimerRequest) -> None:
        assert isinstance(timer, func.TimerRequest)
        started = vt.now
        await vt.sleep(seconds)
        calls.append((host, timer.past_due, started, vt.now))
        if fail:
            raise RuntimeError("boom")

    return app


def at(calls: list[Call]) -> list[str]:
    return [c[2].strftime("%H:%M:%S") for c in calls]


async def run(hosts: list[DevHost], until: Callable[[], bool]) -> None:
    for h in hosts:
        await h.start("127.0.0.1", free_port())
    try:
        async with asyncio.timeout(10):
            while not until():
                await asyncio.sleep(0)
    finally:
        for h in hosts:
            await h.stop()


def host(app: func.FunctionApp, vt: VirtualTime, state: Path, **env: str) -> DevHost:
    return DevHost(app, {}, {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **env},
                   state_dir=state, clock=vt.clock, sleep=vt.sleep, timer_lock_poll_seconds=5)


def test_runs_on_schedule_from_a_setting(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    app = timer_app("%CLEANUP_SCHEDULE%", calls, "a", vt)
    dev = host(app, vt, tmp_path, CLEANUP_SCHEDULE="0 0 * * * *")
    asyncio.run(run([dev], lambda: len(calls) == 3))
    assert [(c[0], c[1]) for c in calls] == [("a", False)] * 3
    assert at(calls) == ["19:00:00", "20:00:00", "21:00:00"]


def test_run_on_startup_then_the_schedule(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    dev = host(timer_app("0 0 3 * * *", calls, "a", vt, run_on_startup=True), vt, tmp_path)
    asyncio.run(run([dev], lambda: len(calls) == 2))
    assert [c[2].isoformat() for c in calls] == ["2026-12-04T18:55:00+00:00",
                                                 "2026-12-05T03:00:00+00:00"]
    assert [c[1] for c in calls] == [False, False]


def test_one_invocation_at_a_time(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    # Every minute, each run taking 90 s: the next starts when the last ends, never beside it.
    dev = host(timer_app("0 * * * * *", calls, "a", vt, seconds=90), vt, tmp_path)
    asyncio.run(run([dev], lambda: len(calls) == 3))
    assert at(calls) == ["18:56:00", "18:57:30", "18:59:00"]
    assert all(a[3] <= b[2] for a, b in zip(calls, calls[1:], strict=False))


def test_a_failed_run_is_not_retried(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    dev = host(timer_app("0 0 * * * *", calls, "a", vt, fail=True), vt, tmp_path)
    asyncio.run(run([dev], lambda: len(calls) == 2))
    assert at(calls) == ["19:00:00", "20:00:00"] and dev.stats["failures"] == 2


def test_a_missed_occurrence_runs_past_due_at_start(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    app = timer_app("0 0 3 * * *", calls, "a", vt)
    first = host(app, vt, tmp_path)
    asyncio.run(run([first], lambda: len(calls) == 1))  # 03:00 on Saturday
    status = json.loads(next(tmp_path.glob("*.cleanup.status.json")).read_text())
    assert status == {"Last": "2026-12-05T03:00:00+00:00", "Next": "2026-12-06T03:00:00+00:00",
                      "LastUpdated": "2026-12-05T03:00:00+00:00"}
    # No host ran on Sunday at 03:00: the next one to start runs it at once, past due.
    vt.now = dt.datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    calls.clear()
    again = host(timer_app("0 0 3 * * *", calls, "a", vt), vt, tmp_path)
    asyncio.run(run([again], lambda: len(calls) == 2))
    assert [(c[1], c[2].isoformat()) for c in calls] == [
        (True, "2026-12-06T09:30:00+00:00"), (False, "2026-12-07T03:00:00+00:00")]


def test_without_the_monitor_nothing_is_past_due(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    dev = host(timer_app("0 0 3 * * *", calls, "a", vt, use_monitor=False), vt, tmp_path)
    asyncio.run(run([dev], lambda: len(calls) == 1))
    assert list(tmp_path.glob("*.status.json")) == []


def test_one_host_runs_a_timer_and_another_takes_over(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    a = host(timer_app("0 0 * * * *", calls, "a", vt), vt, tmp_path)
    b = host(timer_app("0 0 * * * *", calls, "b", vt), vt, tmp_path)

    async def until(done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                await asyncio.sleep(0)

    async def go() -> None:
        await a.start("127.0.0.1", free_port())
        await b.start("127.0.0.1", free_port())
        try:
            await until(lambda: len(calls) >= 3)
            assert {c[0] for c in calls} == {"a"}  # b waits: a holds the timer
            await a.stop()
            await until(lambda: calls[-1][0] == "b")  # b takes over
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(go())
    assert len({c[2] for c in calls}) == len(calls)  # never the same occurrence twice


def test_hosts_on_other_storage_each_run_it(tmp_path: Path) -> None:
    vt, calls = VirtualTime(FRIDAY), []
    a = host(timer_app("0 0 * * * *", calls, "a", vt), vt, tmp_path)
    b = DevHost(timer_app("0 0 * * * *", calls, "b", vt), {},
                {"AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=other"},
                state_dir=tmp_path, clock=vt.clock, sleep=vt.sleep)
    asyncio.run(run([a, b], lambda: {c[0] for c in calls} == {"a", "b"}))


def test_a_bad_schedule_stops_the_host_before_it_starts(tmp_path: Path) -> None:
    vt: VirtualTime = VirtualTime(FRIDAY)
    for schedule, env, message in [
        ("0 0 3 * *", {}, "timer cleanup: schedule '0 0 3 * *': '0 0 3 * *' has 5 fields, "
         "NCRONTAB has six: {second} {minute} {hour} {day} {month} {day-of-week}, e.g. "
         "'0 */5 * * * *' (cron's five fields lack the seconds: put '0 ' in front)"),
        ("%NIGHTLY%", {}, "timer cleanup: schedule '%NIGHTLY%': trigger refers to %NIGHTLY% "
         "but that setting is not set"),
    ]:
        with pytest.raises(HostError) as caught:
            host(timer_app(schedule, [], "a", vt), vt, tmp_path, **env)
        assert str(caught.value) == message
