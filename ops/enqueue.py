"""`python -m ops enqueue`: put an outbound job on the queue, checked against the schema.

    python -m ops enqueue '{"type": "sms", "to": "+15551234567", "body": "hi"}'
    python -m ops enqueue --sms +15551234567 "Your table is ready" --id order-1042
    python -m ops enqueue --call +15551234567 "This is a reminder"
    echo '{"type": "sms", "to": "+15551234567", "body": "hi"}' | python -m ops enqueue -
    python -m ops enqueue --no-validate 'not even JSON'     # sent as it is (tests the app)

It prints the job's key (its id, else msg-<queue message id>), which `jobs show` takes. A job
whose id the ledger holds as final (sent, or burned: rejected, failed, unknown) would not be
sent: it is not enqueued, exit 1, unless --force (the app then drops it, as it says).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from ops import target as tgt
from ops.ledger import fetch
from shared import jobs
from shared.ledger import FINAL_STATUSES


def add_parser(commands: Any) -> None:
    p = commands.add_parser("enqueue", help="put a job on the outbound queue",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", help="the job as JSON, or - to read it from stdin")
    p.add_argument("--sms", nargs=2, metavar=("TO", "BODY"), help="an SMS job")
    p.add_argument("--call", nargs=2, metavar=("TO", "SAY"), help="a call job that speaks SAY")
    p.add_argument("--id", help="the job's id (its idempotency key)")
    p.add_argument("--base64", action="store_true", help="base64-encode the message text")
    p.add_argument("--no-validate", action="store_true",
                   help="send it even if it is not a valid job, or not JSON at all")
    p.add_argument("--force", action="store_true",
                   help="enqueue it even when the ledger holds its id as final (it is then "
                        "not sent: the app drops it)")
    tgt.add_arguments(p)
    p.set_defaults(run=run)


def message_text(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None]:
    """The queue message's text, and the job as a document (None: not JSON, not checked)."""
    given = [x for x in (args.job is not None, args.sms, args.call) if x]
    if len(given) != 1:
        raise tgt.OpsError("give exactly one of: a job as JSON (or - for stdin), --sms, --call")
    if args.sms:
        doc: Any = {"type": "sms", "to": args.sms[0], "body": args.sms[1]}
    elif args.call:
        doc = {"type": "call", "to": args.call[0], "say": args.call[1]}
    else:
        text = sys.stdin.read() if args.job == "-" else args.job
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if not args.no_validate:
                raise tgt.OpsError(f"the job is not JSON ({exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno}); --no-validate sends it anyway") from None
            if args.id:
                raise tgt.OpsError("--id needs a JSON job to put the id in") from None
            return text, None
    if args.id:
        if not isinstance(doc, dict):
            raise tgt.OpsError("--id needs a JSON object to put the id in")
        doc["id"] = args.id
    if not args.no_validate:
        try:
            jobs.from_dict(doc)
        except jobs.JobRejected as exc:
            raise tgt.OpsError(f"not enqueued: {exc}") from None
    return json.dumps(doc, ensure_ascii=False), doc if isinstance(doc, dict) else None


async def ledger_note(session: tgt.Session, key: str, force: bool) -> str:
    """What the ledger already holds for `key`: raises (exit 1) for a final row unless
    `force`; returns a note to print ("" when there is nothing to say)."""
    from azure.core.exceptions import HttpResponseError

    try:
        row = await fetch(session, key, table_required=False)
    except HttpResponseError as exc:  # a producer's login may only send to the queue
        return f"note: the ledger could not be read ({session.explain(exc)})"
    status = (row or {}).get("status")
    if status in FINAL_STATUSES:
        done = f"sent as {(row or {}).get('sid')}" if status == "sent" else f"{status} (burned)"
        if not force:
            hint = ("a new id sends a new message" if status == "sent" else
                    f"`python -m ops deadletters replay --job {key}` sends it again under a "
                    "new id")
            raise tgt.OpsError(f"not enqueued: job {key} is {done} in the ledger, so the app "
                               f"would not send it again ({hint}; --force enqueues it "
                               "anyway)", 1)
        return f"note: job {key} is {done} in the ledger: the app will not send this copy"
    if status:
        return f"note: job {key} is {status} in the ledger: the app sends it once, whichever " \
               "copy comes first"
    return ""


async def run(args: argparse.Namespace) -> int:
    text, doc = message_text(args)
    if args.base64:
        text = base64.b64encode(text.encode("utf-8")).decode("ascii")
    target = tgt.resolve(args)
    queue = target.names.outbound_queue_name
    job_id = doc.get("id") if doc else None
    async with tgt.Session(target) as session:
        note = await ledger_note(session, job_id, args.force) \
            if isinstance(job_id, str) and job_id else ""
        sent = await session.queue(queue).send_message(text)
    key = job_id if isinstance(job_id, str) and job_id else f"msg-{sent.id}"
    what = f"job {key}" if doc is not None else "a message that is not JSON"
    print(f"enqueued {what} as message {sent.id} on {queue} ({target.where})")
    if note:
        print(note)
    return 0
