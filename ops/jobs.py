"""`python -m ops jobs show ID`: a job's row in the ledger, readable (`--json` for scripts).

The row's `RowKey` is the job's key (its `id`, else `msg-<queue message id>`) in
`JOBS_TABLE_NAME`; its partition follows from the key (`shared.ledger.job_partition`), or it
is a row of an earlier version in the partition `job`: both are looked at. Known fields
come first under friendly names; any other field follows as it is (numbers in `*_at` /
`*_until` fields read as times), so a field the app adds later shows up without a change.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import time
from typing import Any

from ops import target as tgt
from ops.text import ago, when
from shared.ledger import BURNED_STATUSES, FINAL_STATUSES, read_job

NOT_FOUND = 3
# Known ledger fields (shared/ledger.py, shared/events.py), in the order shown, with labels.
FIELDS = {
    "status": "status",
    "sid": "Twilio SID",
    "twilio_status": "Twilio status",
    "twilio_error_code": "Twilio error code",
    "twilio_code": "Twilio refusal code",
    "answered_by": "answered by",
    "recording_status": "recording status",
    "recording_url": "recording URL",
    "recording_sid": "recording SID",
    "attempts": "attempts",
    "last_error": "last error",
    "retry_at": "next attempt",
    "ambiguous": "unclear attempts",
    "reconciled": "checked at Twilio",
    "lease_until": "lease until",
    "claimed_at": "claimed",
    "claim_id": "claim",
    "check_since": "check Twilio since",
    "absent_at": "not found at Twilio",
    "first_message_id": "first queue message",
    "message_id": "last queue message",
    "callback_sid": "last callback SID",
    "updated_at": "updated",
}
STATUS_MEANS = {
    "sending": "a delivery is sending it (until the lease ends)",
    "retrying": "waiting for its next attempt (a delayed copy is on the outbound queue)",
    "sent": "Twilio accepted it",
    "rejected": "refused for good; its dead letter is in -rejected",
    "failed": "retries ran out; its dead letter is in -poison",
    "unknown": "it may have reached Twilio: check the Twilio console (dead letter "
               "outcome_unknown)",
}


def add_parser(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="look up jobs in the ledger",
                               description="Look up jobs in the jobs table (the ledger).")
    sub = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="a job's row: status, SID, attempts, errors, times",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("id", metavar="ID", help="the job's id, or msg-<queue message id>")
    show.add_argument("--json", action="store_true", help="the row as one JSON object")
    tgt.add_arguments(show)
    show.set_defaults(run=run_show)


def plain(value: Any) -> Any:
    """A table value as JSON can carry it (Int64 and friends arrive wrapped)."""
    if hasattr(value, "edm_type") and hasattr(value, "value"):
        value = value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def is_time(name: str, value: Any) -> bool:
    return (name.endswith(("_at", "_until", "_since")) and isinstance(value, (int, float))
            and not isinstance(value, bool) and 1e9 < value < 1e11)


def show_value(name: str, value: Any, now: float) -> str:
    if name.endswith(("_at", "_until", "_since")) and value in (0, 0.0):
        return "-"  # a time not set (check_since 0: nothing to check at Twilio)
    if is_time(name, value):
        return f"{when(value)} ({ago(value, now)})"
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), ensure_ascii=False)
        except ValueError:
            pass
    return "-" if value in ("", None) else str(value)


def render(key: str, row: dict[str, Any], table: str, where: str, now: float) -> str:
    lines = [f"job {key}  (table {table}, {where})"]
    width = max(len(label) for label in FIELDS.values()) + 2
    status = row.get("status")
    for name, label in FIELDS.items():
        if name not in row:
            continue
        text = show_value(name, row[name], now)
        if name == "status":
            text += f": {STATUS_MEANS.get(str(status), 'a status this tool does not know')}"
        if name == "lease_until" and status != "sending":
            continue  # a lease only means something while sending
        lines.append(f"  {label:<{width}}{text}")
    others = sorted(k for k in row if k not in FIELDS and k not in ("PartitionKey", "RowKey"))
    if others:
        lines.append("  other fields")
        w = max(width, max(len(k) for k in others) + 2)
        lines += [f"  {k:<{w}}{show_value(k, row[k], now)}" for k in others]
    if status == "unknown":
        # `replay --job` alone skips outcome_unknown dead letters (ops.deadletters.decide):
        # sending one again is a choice made after looking at Twilio.
        lines.append(f"This id is burned: enqueued again under it, the job is never sent. "
                     "Twilio may have sent it: check the Twilio console (Monitor > Logs) "
                     "first; only if it was not sent, `python -m ops deadletters replay --kind "
                     f"outcome_unknown --job {key}` sends it again under a new id.")
    elif status in BURNED_STATUSES:
        lines.append(f"This id is burned: enqueued again under it, the job is never sent. "
                     f"`python -m ops deadletters replay --job {key}` sends it again under a "
                     "new id.")
    elif status in FINAL_STATUSES:
        lines.append("Final: enqueued again under this id, the job is not sent again.")
    return "\n".join(lines)


async def fetch(session: tgt.Session, key: str, *, table_required: bool = True
                ) -> dict[str, Any] | None:
    """The row for `key`, None when there is none; no table yet is an error unless not
    `table_required` (then no row either)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        entity = await read_job(session.table(), key)
    except ResourceNotFoundError as exc:
        if table_required and getattr(exc, "error_code", None) == "TableNotFound":
            t = session.target
            raise tgt.OpsError(f"table {t.names.jobs_table_name} does not exist in {t.where}: "
                               "no job was processed there yet (or the table has another "
                               "name: --table)", NOT_FOUND) from None
        return None
    if entity is None:
        return None
    return {k: plain(v) for k, v in entity.items()}


async def run_show(args: argparse.Namespace) -> int:
    if any(c in args.id for c in "/\\#?") or not args.id.strip():
        raise tgt.OpsError(f"ID {args.id!r} cannot be a job key (no / \\ # ? and not empty)")
    target = tgt.resolve(args)
    table = target.names.jobs_table_name
    async with tgt.Session(target) as session:
        row = await fetch(session, args.id)
    if row is None:
        raise tgt.OpsError(
            f"no job {args.id!r} in table {table} ({target.where}). A job without an id has "
            "the key msg-<queue message id>; a job still waiting on the queue has no row yet.",
            NOT_FOUND)
    if args.json:
        print(json.dumps(row, ensure_ascii=False, sort_keys=True))
    else:
        print(render(args.id, row, table, target.where, time.time()))
    return 0
