"""Phone numbers in log lines, masked to their last four digits: `+*******4567`.

Log lines go to Application Insights, where more people read them for longer than the
jobs table and the dead-letter queues, which keep numbers whole for operators. One format
everywhere: every digit of a number but the last four becomes `*`, marks and prefixes stay
(`whatsapp:+*******4567`, `(***) ***-0122`).

One mechanism: a module takes its logger from `logger(__name__)`, whose filter masks each
record's final message (and its traceback) before any handler sees it. The same filter
writes an Account SID as `AC…` (`redact`): aiohttp puts the request URL in its messages, and a
person needs to know which request failed, not the account's identifier.
"""

from __future__ import annotations

import logging
import re

_NUMBER = re.compile(
    # E.164, alone or in an address (whatsapp:+15551234567, sip:+14155550122@host);
    # people's marks between digits allowed after the +.
    r"\+[0-9](?:[\s().-]{0,2}[0-9]){6,14}(?![0-9])"
    # 10 to 15 digits standing alone: a national number, E.164 without its +
    # (client:14155550122). Digits inside a word or an id (SIDs, job keys) are not one.
    r"|(?<![0-9A-Za-z_+-])[0-9]{10,15}(?![0-9A-Za-z_-])"
    # A number written the US/Canada way, with marks: (415) 555-0122, 415.555.0122,
    # 1-415-555-0122. Marks include any space (a no-break or thin space pasted from a page).
    r"|(?<![0-9A-Za-z_-])(?:1[\s.-])?\(?[0-9]{3}\)?[\s.-]?[0-9]{3}[\s.-][0-9]{4}"
    r"(?![0-9A-Za-z_-])")
_KEPT_DIGITS = 4
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


def _masked(match: re.Match[str]) -> str:
    text = match[0]
    hide = sum(c.isdigit() for c in text) - _KEPT_DIGITS
    out = []
    for c in text:
        if c.isdigit() and hide > 0:
            hide -= 1
            c = "*"
        out.append(c)
    return "".join(out)


def mask(text: str) -> str:
    """`text` with every phone number in it masked to its last four digits."""
    return _NUMBER.sub(_masked, text)


def redact(text: str) -> str:
    """`text` with every Account SID written `AC…` (dead-letter reasons, rows, log lines)."""
    return _ACCOUNT_SID.sub("AC…", text)


class MaskNumbers(logging.Filter):
    """Masks phone numbers in a record's message and traceback, in place: the handlers
    (the Functions worker's, pytest's) see only the masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: logging reports it itself
            return True
        masked = mask(redact(message))
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(redact(logging.Formatter().formatException(
                record.exc_info)))
        if record.stack_info:
            record.stack_info = mask(redact(record.stack_info))
        return True


_FILTER = MaskNumbers()


def logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with phone numbers masked in every record it logs."""
    log = logging.getLogger(name)
    log.addFilter(_FILTER)  # once: addFilter ignores a filter already there
    return log
