"""A bounded wait that says what it is waiting for: the hooks poll, they never hang."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A probe returns None once the thing waited for works, else why it does not yet.
Probe = Callable[[], str | None]
Say = Callable[[str], None]


@dataclass
class Clock:
    """Time and sleep, injectable so tests wait in no time."""

    now: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)


def until(probe: Probe, *, what: str, budget_s: float, every_s: float, say: Say,
          clock: Clock | None = None) -> str | None:
    """Poll `probe` every `every_s` seconds for at most `budget_s`. Returns None when it
    succeeded, else its last reason. One line per try that failed, with the time spent."""
    clock = clock or Clock()
    start = clock.now()
    while True:
        reason = probe()
        if reason is None:
            return None
        spent = clock.now() - start
        if spent + every_s > budget_s:
            return reason
        say(f"  waiting for {what}: {reason}; next try in {every_s:.0f} s "
            f"({_mmss(spent)} of at most {_mmss(budget_s)})")
        clock.sleep(every_s)


def _mmss(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
