"""Times, ages and tables for the terminal."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
from collections.abc import Sequence

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def span(seconds: float) -> str:
    """45s, 12m, 3h, 2d."""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def ago(epoch: float, now: float) -> str:
    return f"{span(now - epoch)} ago" if epoch <= now else f"in {span(epoch - now)}"


def since(text: str, now: float) -> float:
    """`--since`: a duration back from now (30m, 2h, 7d) or an ISO date/time (UTC if no
    zone). Returns epoch seconds."""
    m = _DURATION.match(text)
    if m:
        return now - float(m[1]) * _UNITS[m[2]]
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration such as 30m, 2h or 7d, or an "
                         "ISO date such as 2026-11-27T14:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, fit: bool | None = None
          ) -> str:
    """Columns padded to their widest cell; the last one cut to the terminal's width when
    writing to a terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fit = sys.stdout.isatty() if fit is None else fit
    room = shutil.get_terminal_size((120, 24)).columns - sum(w + 2 for w in widths[:-1])
    out = []
    for cells in [list(headers), *map(list, rows)]:
        last = cells[-1]
        if fit and len(last) > max(room, 20):
            last = last[:max(room, 20) - 1] + "…"
        out.append("  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True))
                   + "  " + last)
    return "\n".join(line.rstrip() for line in out)

