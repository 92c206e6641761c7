"""`python -m ops jobs show ID`: a job's row in the ledger, readable (`--json` for scripts).

The row's `RowKey` is the job's key (its `id`, else `msg-<queue message id>`) in
`JOBS_TABLE_NAME`; its partition follows from the key (`shared.ledger.job_partition`), or it
is a row of an earlier version in the partition `job`: both are looked at. Known fields
come first under friendly names; any other field follows as it is (numbers in `*_at` /
`*_until` fields read as times), so a field the app adds later shows up without a change.
A burned id that was replayed is followed to the id it went under (`order-1` ->
`order-1.r1`). A job refused before it had a row (not a valid job, no sender) is found among
the dead letters by its own id.

    python -m ops jobs show order-1042
    python -m ops jobs show order-1042 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ops import target as tgt
from ops.ledger import fetch
from ops.letters import NOT_FOUND, PEEK_MAX, Letter, count, looked_in
from ops.replay import next_id
from ops.text import ago, when
from shared.ledger import BURNED_STATUSES, FINAL_STATUSES

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
    "replay_of": "replay of",
    "updated_at": "updated",
}
STATUS_MEANS = {
    "sending": "a delivery is sending it (until the lease ends)",
    "retrying": "waiting for its next attempt (a delayed copy is on the outbound queue)",
    "sent": "Twilio accepted it",
    "rejected": "refused for good; its dead letter is in -rejected",
    "failed": "retries ran out; its dead letter is in -poison",
    "unknown": "it may have reached Twilio (dead letter outcome_unknown)",
}
REPLAYS_FOLLOWED = 20  # order-1.r1 ... .r20: more is a loop someone should look at


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


def render(key: str, row: dict[str, Any], table: str, where: str, now: float,
           replays: list[tuple[str, dict[str, Any]]] | None = None) -> str:
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
    lines += what_next(key, row, replays or [])
    return "\n".join(lines)


def what_next(key: str, row: dict[str, Any], replays: list[tuple[str, dict[str, Any]]]
              ) -> list[str]:
    """The closing lines: where a replay took the job, or what to do about it."""
    status = row.get("status")
    out = []
    for new_id, later in replays:
        later_status = later.get("status")
        sid = f" as {later['sid']}" if later.get("sid") else ""
        out.append(f"Replayed as {new_id}: {later_status}{sid}: "
                   f"{STATUS_MEANS.get(str(later_status), 'a status this tool does not know')}")
    if replays:
        last, later = replays[-1]
        if later.get("status") in BURNED_STATUSES:
            out.append(f"`python -m ops jobs show {last}` for why; `python -m ops deadletters "
                       f"replay --job {last}` sends it again under a new id.")
        return out
    if status in BURNED_STATUSES:
        out.append(f"This id is burned: a job enqueued again with it is never sent. `python -m "
                   f"ops deadletters replay --job {key}` sends it again under a new id"
                   + (" (the worker first looks at Twilio for it, and sends only if it is not "
                      "there)." if status == "unknown" else "."))
    elif status in FINAL_STATUSES:
        out.append("Final: a job enqueued again with this id is not sent again (`enqueue` "
                   "refuses it unless --force); a new id sends a new message.")
    return out


async def replays_of(session: tgt.Session, key: str, row: dict[str, Any]
                     ) -> list[tuple[str, dict[str, Any]]]:
    """The replays a burned `key` went out under, in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    while row.get("status") in BURNED_STATUSES and len(out) < REPLAYS_FOLLOWED:
        key = next_id(key)
        later = await fetch(session, key, table_required=False)
        if later is None:
            break
        out.append((key, later))
        row = later
    return out


async def letters_of(session: tgt.Session, key: str) -> tuple[list[tuple[Letter, str]],
                                                              list[str]]:
    """Dead letters of job `key` among the first 32 of each dead-letter queue, and notes on
    queues that hold more."""
    names = session.target.names
    found, notes = [], []
    for queue, name in (("rejected", names.rejected_queue_name),
                        ("poison", names.poison_queue_name)):
        client = session.queue(name)
        total = await count(client)
        if not total:
            continue
        for m in await client.peek_messages(max_messages=PEEK_MAX):
            letter = Letter.read(queue, m)
            if letter.job_key == key:
                found.append((letter, name))
        if total > PEEK_MAX:
            notes.append(f"{name} holds about {total}: only its first {PEEK_MAX} were looked "
                         f"at (`python -m ops deadletters list --all --job {key}` reads all)")
    return found, notes


def render_letters(key: str, letters: list[tuple[Letter, str]], table: str, where: str,
                   now: float) -> str:
    lines = [f"job {key}  (no row in table {table}, {where}: it was refused before it was "
             "claimed, so it was never sent)"]
    for letter, name in letters:
        lines += [f"  dead letter {letter.id} in {name}, {ago(letter.at, now)}",
                  f"    {'kind':<9}{letter.kind}",
                  f"    {'reason':<9}{' '.join(letter.reason.split())}",
                  f"    `python -m ops deadletters show {letter.id}` shows it; `python -m ops "
                  f"deadletters replay {letter.id} --dry-run` says what a replay would do"]
    return "\n".join(lines)


async def run_show(args: argparse.Namespace) -> int:
    if any(c in args.id for c in "/\\#?") or not args.id.strip():
        raise tgt.OpsError(f"ID {args.id!r} cannot be a job key (no / \\ # ? and not empty)")
    target = tgt.resolve(args)
    table = target.names.jobs_table_name
    now = time.time()
    no_table = None
    async with tgt.Session(target) as session:
        try:
            row = await fetch(session, args.id)
        except tgt.OpsError as exc:  # no table yet: a refused job may still be found
            row, no_table = None, exc
        replays = await replays_of(session, args.id, row) if row else []
        letters, notes = await letters_of(session, args.id) if row is None else ([], [])
    if row is None and not letters:
        names = target.names
        raise tgt.OpsError(
            (f"{no_table}; no job {args.id!r} among the dead letters either (" if no_table
             else f"no job {args.id!r} in table {table} nor among the dead letters (")
            + looked_in([names.rejected_queue_name, names.poison_queue_name], target)
            + "). A job without an id has the key msg-<queue message id>; a job still "
            "waiting on the queue has no row yet." + "".join(f" {n}." for n in notes),
            NOT_FOUND)
    if args.json:
        print(json.dumps(row if row is not None else {
            "RowKey": args.id, "status": None,
            "dead_letters": [{"message_id": x.id, "queue_name": n, "kind": x.kind,
                              "reason": x.reason} for x, n in letters]},
            ensure_ascii=False, sort_keys=True))
    elif row is not None:
        print(render(args.id, row, table, target.where, now, replays))
    else:
        print(render_letters(args.id, letters, table, target.where, now))
    for note in notes:
        print(note, file=sys.stderr)
    return 0
