"""What went wrong with a send, and whether trying again can help."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from shared.credentials import CredentialsError
from shared.jobs import JobRejected

# Twilio error codes that no retry can fix (the number, the recipient or the content).
PERMANENT_CODES = frozenset({21211, 21610, 21614, 21608, 21612, 21606, 21635, 21617})
# Twilio is pacing the account: retry, but later.
CAPACITY_CODES = frozenset({21611, 30001, 22005})
TOO_MANY_REQUESTS = 20429
# An Account SID in an error text (aiohttp puts the request URL in its messages): a person
# needs to know which request failed, not the account's identifier.
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


def redact(text: str) -> str:
    return _ACCOUNT_SID.sub("AC…", text)


@dataclass(frozen=True)
class Failure:
    kind: str  # "permanent", "transient" or "capacity"
    reason: str
    twilio_code: int | None = None
    http_status: int | None = None
    # Twilio may have acted on the request: no answer came (a timeout, or the connection
    # broke after the request was written). An HTTP error answer means it did not.
    ambiguous: bool = False
    letter_kind: str = "twilio_permanent"  # the dead letter's kind, when not retryable

    @property
    def retryable(self) -> bool:
        return self.kind != "permanent"


def classify(exc: BaseException) -> Failure | None:
    """A `Failure` for errors we understand; None for a bug (let the host retry it)."""
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, JobRejected):
        return Failure("permanent", str(exc), letter_kind="invalid_job")
    if isinstance(exc, TwilioRestException):
        status, code = exc.status, exc.code
        reason = redact(f"Twilio answered HTTP {status}" + (f", error {code}" if code else "")
                        + (f": {exc.msg}" if exc.msg else ""))
        if code in CAPACITY_CODES:
            return Failure("capacity", reason, code, status)
        if code in PERMANENT_CODES:
            return Failure("permanent", reason, code, status)
        if status in (401, 408, 409, 429) or code == TOO_MANY_REQUESTS or status >= 500:
            # 401 after the secrets were re-read: a credentials problem, not the job's.
            return Failure("transient", reason, code, status)
        return Failure("permanent", reason, code, status)
    if isinstance(exc, CredentialsError):
        return Failure("transient", redact(f"Twilio credentials unavailable: {exc}"))
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Failure("transient", "Twilio request timed out", ambiguous=True)
    import aiohttp

    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        # Never connected: the request was not sent.
        return Failure("transient", _network(exc))
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return Failure("transient", _network(exc), ambiguous=True)
    return None


def _network(exc: BaseException) -> str:
    return redact(f"network error talking to Twilio: {type(exc).__name__}: {exc}")
