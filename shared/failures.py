"""What went wrong with a send, and whether trying again can help."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.credentials import CredentialsError
from shared.jobs import JobRejected, printable
from shared.redaction import redact

# Twilio error codes that no retry can fix (the number, the recipient or the content).
PERMANENT_CODES = frozenset({21211, 21610, 21614, 21608, 21612, 21606, 21635, 21617})
# Twilio is pacing the account: retry, but later.
CAPACITY_CODES = frozenset({21611, 30001, 22005})
TOO_MANY_REQUESTS = 20429
# What a newcomer needs to know next to Twilio's own words for these refusals.
HINTS = {
    21608: "a trial account sends only to numbers verified in the Twilio console (Phone "
           "Numbers > Verified Caller IDs); verify this one or upgrade the account",
    21606: "the sender must be a number of this account that can send SMS: set "
           "TWILIO_FROM_NUMBER (or the job's 'from') to one listed under Phone Numbers > "
           "Active numbers",
    21212: "the sender is not a valid phone number of this account: check TWILIO_FROM_NUMBER",
}
@dataclass(frozen=True)
class Failure:
    kind: str  # "permanent", "transient", "capacity" or "throttled"
    reason: str
    twilio_code: int | None = None
    http_status: int | None = None
    # Twilio may have acted on the request: no answer came (a timeout, or the connection
    # broke after the request was written). An HTTP error answer means it did not.
    ambiguous: bool = False
    letter_kind: str = "twilio_permanent"  # the dead letter's kind, when not retryable
    retry_after: float | None = None  # Twilio's hint, for a throttled request

    @property
    def retryable(self) -> bool:
        return self.kind != "permanent"


def classify(exc: BaseException, *, sending: bool = False) -> Failure:
    """What `exc` means for the job. `sending`: it came from the request that creates the
    message or call, so an error we cannot explain may have come after Twilio acted on it
    (an answer that cannot be read, a bug past the request): such a failure is ambiguous, and
    the next attempt looks at Twilio first. Nothing here raises: every job ends somewhere."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    from shared.twilio_rest import TwilioThrottled

    if isinstance(exc, JobRejected):
        return Failure("permanent", str(exc), letter_kind="invalid_job")
    if isinstance(exc, TwilioRestException):
        status, code = exc.status, exc.code
        reason = redact(f"Twilio answered HTTP {status}" + (f", error {code}" if code else "")
                        + (f": {exc.msg}" if exc.msg else ""))
        if code in HINTS:
            reason += f" ({HINTS[code]})"
        if code in CAPACITY_CODES:  # a full sender queue: minutes, not seconds
            return Failure("capacity", reason, code, status)
        if isinstance(exc, TwilioThrottled) or status == 429 or code == TOO_MANY_REQUESTS:
            # Never processed (Twilio's documentation of 20429): safe to send again.
            return Failure("throttled", reason, code, status,
                           retry_after=getattr(exc, "retry_after", None))
        if code in PERMANENT_CODES:
            return Failure("permanent", reason, code, status)
        if status >= 500:
            # Only a 429 is documented as never processed. A 5xx to a create may come after
            # Twilio created the message (its 20500 page: retrying a send after a 500 can
            # send it twice): the next attempt looks at Twilio first.
            return Failure("transient", reason, code, status, ambiguous=sending)
        if status in (401, 408, 409):
            # 401 after the secrets were re-read: a credentials problem, not the job's.
            return Failure("transient", reason, code, status)
        return Failure("permanent", reason, code, status)
    if isinstance(exc, TwilioException) and len(exc.args) > 1 and \
            isinstance(getattr(exc.args[1], "status_code", None), int):
        # A list page Twilio refused (the look before a resend): "Unable to fetch page".
        status = exc.args[1].status_code
        return Failure("transient", f"Twilio answered HTTP {status} to a list request",
                       http_status=status)
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
    where = "after the request to Twilio" if sending else "talking to Twilio"
    return Failure("transient", redact(f"unexpected error {where}: {type(exc).__name__}: "
                                       f"{printable(str(exc))[:300]}"), ambiguous=sending)


def _network(exc: BaseException) -> str:
    return redact(f"network error talking to Twilio: {type(exc).__name__}: {exc}")
