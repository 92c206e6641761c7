"""Dead letters: what the app writes to `<queue>-rejected` and `<queue>-poison`, and the one
log line per dead letter that alerts and Kusto queries are built on.

An envelope (JSON, `envelope_version` 1) holds what a person needs to act: `kind`, `reason`,
`job_key`, `twilio_code`, `queue_message_id`, `dequeue_count`, `at`, and the original message
text as `original` (or `original_base64` when it was not UTF-8). Every envelope fits a
storage queue message by construction: when the original would not, it is cut
(`original_truncated: true`) and `original_bytes` + `original_sha256` identify it. Only an
invalid job can be that large (a schema-valid job is far smaller), so nothing replayable
is ever cut.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from typing import Any

from shared import redaction
from shared.jobs import printable
from shared.storage import MAX_MESSAGE_BYTES, queue_bytes

log = redaction.logger("shared.deadletters")  # phone numbers masked

ENVELOPE_VERSION = 1
# Every kind of dead letter the app writes. The Functions host's own poison move (a crash
# repeated maxDequeueCount times) leaves the original text in `-poison`, not an envelope.
KINDS = ("invalid_job", "no_sender", "twilio_permanent", "retries_exhausted",
         "outcome_unknown", "throttled")
# The log line alerts match (infra/app/alerts.bicep); fields are single tokens, `reason`
# comes last and runs to the end of the line.
LOG_PREFIX = "dead_letter"
LOG_FIELDS = ("kind", "job_key", "twilio_code", "queue", "reason")
# Room left for the envelope's own fields (reason, ids, timestamps) beside the original.
_MARGIN_BYTES = 4 * 1024
_REASON_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def envelope(*, kind: str, reason: str, original: bytes | str, queue_message_id: str,
             job_key: str | None, twilio_code: int | None, dequeue_count: int, at: float,
             **extra: Any) -> str:
    """The envelope's JSON text, at most `MAX_MESSAGE_BYTES` on the queue."""
    doc: dict[str, Any] = {
        "envelope_version": ENVELOPE_VERSION, "kind": kind,
        "reason": printable(reason)[:_REASON_CHARS],
        "job_key": job_key, "twilio_code": twilio_code, "queue_message_id": queue_message_id,
        "dequeue_count": dequeue_count, **extra,
        "at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat()}
    # A str original with a lone surrogate is kept byte for byte too (as base64).
    raw = original.encode("utf-8", "surrogatepass") if isinstance(original, str) else original
    try:
        text = raw.decode("utf-8")
        field = "original"
    except UnicodeDecodeError:  # kept byte for byte
        text = base64.b64encode(raw).decode("ascii")
        field = "original_base64"
    budget = MAX_MESSAGE_BYTES - _MARGIN_BYTES
    if queue_bytes(json.dumps(text, ensure_ascii=False)) > budget:
        doc.update(original_truncated=True, original_bytes=len(raw),
                   original_sha256=hashlib.sha256(raw).hexdigest())
        text = _cut(text, budget)
    doc[field] = text
    out = json.dumps(doc, ensure_ascii=False)
    assert queue_bytes(out) <= MAX_MESSAGE_BYTES, "envelope margin too small"
    return out


def _cut(text: str, budget: int) -> str:
    """The longest prefix of `text` whose JSON string fits `budget` queue bytes."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if queue_bytes(json.dumps(text[:mid], ensure_ascii=False)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def log_dead_letter(*, kind: str, job_key: str | None, twilio_code: int | None, queue: str,
                    reason: str) -> None:
    """One WARNING line per dead letter, `key=value` so a Kusto `parse` can split it: the
    Python worker forwards a log record's message to Application Insights, not its extras."""
    log.warning("%s kind=%s job_key=%s twilio_code=%s queue=%s reason=%s", LOG_PREFIX, kind,
                _token(job_key), _token(twilio_code), queue,
                _CONTROL.sub(" ", reason)[:_REASON_CHARS])


def _token(value: object) -> str:
    text = "-" if value is None or value == "" else str(value)
    return re.sub(r"\s", "_", text)


def parse(text: str) -> dict[str, Any] | None:
    """An envelope read back from a dead-letter queue, or None when the message is not one
    (the host's poison move leaves the original text as it was)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS or "reason" not in doc:
        return None
    return doc
