"""`python -m ops deadletters list|show|replay|delete`: what is in `<queue>-rejected` and
`-poison`, why, sending it again, and discarding it.

A dead letter is an envelope (`shared.deadletters`): kind, reason, Twilio code, job key and
the original message. The Functions host's own poison move (a crash repeated
maxDequeueCount times) leaves the original text in -poison as it was: kind `host_poison`.
Any message is listed, shown and replayed or skipped with its reason, whatever it holds.

    python -m ops deadletters list --since 2h
    python -m ops deadletters show <message-id>
    python -m ops deadletters replay --all --dry-run
    python -m ops deadletters delete <message-id> --yes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from ops import replay
from ops import target as tgt
from ops.letters import (
    HOST_POISON,
    KINDS,
    NOT_FOUND,
    PEEK_MAX,
    QUEUES,
    Letter,
    Reader,
    count,
    find,
    json_of,
    looked_in,
    queue_names,
    selection,
)
from ops.text import ago, span, table, when
from shared import jobs

# -- list --------------------------------------------------------------------------------


def reason_of(letter: Letter) -> str:
    """The reason, on one line; for the host's move, also why it cannot be replayed."""
    why = letter.why_not() if letter.kind == HOST_POISON else ""
    return " ".join((letter.reason + (f"; cannot be replayed: {why}" if why else "")).split())


def row_of(letter: Letter, now: float) -> list[str]:
    return [span(now - letter.at), letter.queue, letter.kind,
            str(letter.twilio_code or "-"), letter.job_key or "-", letter.id, reason_of(letter)]


def facts(letter: Letter, queue_name: str, now: float) -> dict[str, Any]:
    why = letter.why_not()
    return {"queue": letter.queue, "queue_name": queue_name, "message_id": letter.id,
            "kind": letter.kind, "reason": letter.reason, "twilio_code": letter.twilio_code,
            "job_key": letter.job_key,
            "at": dt.datetime.fromtimestamp(letter.at, dt.UTC).isoformat(),
            "age_seconds": round(now - letter.at), "replayable": not why, "why_not": why}


async def run_list(args: argparse.Namespace) -> int:
    now = time.time()
    chosen = selection(args, now)
    target = tgt.resolve(args)
    rows: list[tuple[float, list[str]]] = []
    notes = []
    async with tgt.Session(target) as session:
        for queue, name in queue_names(args, target):
            client = session.queue(name)
            total = await count(client)
            if total is None:
                notes.append(f"{name}: no such queue yet (nothing was dead-lettered there)")
                continue
            reader = Reader(client, scan=args.all and total > PEEK_MAX)
            try:
                async for page in reader.pages():
                    for m in page:
                        letter = Letter.read(queue, m)
                        if chosen.matches(letter):
                            line = json.dumps(facts(letter, name, now), ensure_ascii=False) \
                                if args.json else None
                            rows.append((letter.at, [line] if line else row_of(letter, now)))
            finally:
                await reader.release()
            if total > PEEK_MAX and not reader.scan:
                notes.append(f"{name}: showing the first {PEEK_MAX} of about {total} (the "
                             "queue service peeks at most 32); --all reads every one")
    rows.sort(key=lambda r: r[0])
    if args.json:
        for _, (line,) in rows:
            print(line)
    elif rows:
        print(table(["AGE", "QUEUE", "KIND", "CODE", "JOB KEY", "MESSAGE ID", "REASON"],
                    [r for _, r in rows]))
    else:
        print("No dead letters" + (" match." if chosen.anything else "."))
    for note in notes:
        print(note, file=sys.stderr)
    return 0


# -- show --------------------------------------------------------------------------------

ENVELOPE_SHOWN = ("kind", "reason", "twilio_code", "job_key", "at", "original",
                  "original_base64", "envelope_version")


def render(letter: Letter, queue_name: str, where: str, now: float) -> str:
    why = letter.why_not()
    lines = [f"dead letter {letter.id}  ({queue_name}, {where})",
             f"  {'kind':<17}{letter.kind}",
             f"  {'reason':<17}{reason_of(letter)}",
             f"  {'Twilio code':<17}{letter.twilio_code or '-'}",
             f"  {'job key':<17}{letter.job_key or '-'}",
             f"  {'dead since':<17}{when(letter.at)} ({ago(letter.at, now)})",
             f"  {'replay':<17}" + (f"no: {why}" if why else
                                    f"python -m ops deadletters replay {letter.id} --dry-run "
                                    "says how")]
    for name, value in (letter.envelope or {}).items():
        if name not in ENVELOPE_SHOWN:
            lines.append(f"  {name:<17}{value}")
    text, missing = letter.original()
    if text is None:
        lines.append(f"original: not available: {missing}")
        return "\n".join(lines)
    doc = json_of(text)
    if doc is None:
        lines.append("original (as it was, not JSON):")
        lines.append(text)
    else:
        encoded = jobs.decode_text(text) not in (text, text.strip())
        lines.append("original (base64, decoded; JSON, indented):" if encoded else
                     "original (JSON, indented):")
        lines.append(json.dumps(doc, indent=2, ensure_ascii=False))
    return "\n".join(lines)


async def run_show(args: argparse.Namespace) -> int:
    target = tgt.resolve(args)
    queues = queue_names(args, target)
    async with tgt.Session(target) as session:
        found, readers = await find(session, queues, [args.message_id])
        for reader in readers:
            await reader.release()
    if args.message_id not in found:
        raise tgt.OpsError(f"no dead letter {args.message_id} "
                           f"({looked_in((n for _, n in queues), target)})", NOT_FOUND)
    letter, _ = found[args.message_id]
    name = dict(queues)[letter.queue]
    if args.raw:
        print(letter.content)
    elif args.original:
        text, why = letter.original()
        if text is None:
            raise tgt.OpsError(f"dead letter {letter.id}: {why}", 1)
        print(text)
    elif args.json:
        text, _ = letter.original()
        print(json.dumps({**facts(letter, name, time.time()), "envelope": letter.envelope,
                          "original": text}, ensure_ascii=False))
    else:
        print(render(letter, name, target.where, time.time()))
    return 0


# -- delete ------------------------------------------------------------------------------

def confirm(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def run_delete(args: argparse.Namespace) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise tgt.OpsError("not a terminal, so it cannot ask: add --yes to delete without "
                           "asking")
    target = tgt.resolve(args)
    queues = queue_names(args, target)
    wanted = list(dict.fromkeys(args.message_ids))
    async with tgt.Session(target) as session:
        found, readers = await find(session, queues, wanted, hold=True)
        try:
            chosen = [found[i] for i in wanted if i in found]
            described = [f"{x.id} ({x.queue} {x.kind}, job {x.job_key or '-'})"
                         for x, _ in chosen]
            if chosen and (args.yes or confirm(
                    "Delete for good:\n  " + "\n  ".join(described) + "\n?")):
                for (letter, reader), text in zip(chosen, described, strict=True):
                    await reader.delete(letter.message)
                    print(f"deleted {text}")
            elif chosen:
                print("Nothing deleted.")
        finally:
            for reader in readers:
                await reader.release()
    missing = [i for i in wanted if i not in found]
    if missing:
        print(f"not found: {', '.join(missing)} "
              f"({looked_in((n for _, n in queues), target)})", file=sys.stderr)
        return NOT_FOUND
    return 0


# -- command line ------------------------------------------------------------------------

def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", choices=QUEUES, help="one queue (default: both)")
    p.add_argument("--kind", action="append", choices=KINDS, metavar="KIND",
                   help=f"only this kind (repeatable): {', '.join(KINDS)}")
    p.add_argument("--job", action="append", metavar="KEY", help="only this job key (repeatable)")
    p.add_argument("--since", metavar="WHEN",
                   help="only dead letters since: 30m, 2h, 7d, or an ISO date (UTC)")


def add_parser(commands: Any) -> None:
    dl = commands.add_parser("deadletters", help="list, show, replay and delete dead letters",
                             description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = dl.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser(
        "list", help="a table of kind, reason, Twilio code, job key and age",
        description="List the dead letters of <queue>-rejected and -poison, oldest first. "
                    "A peek: nothing changes. A queue holding more than 32 shows its first 32 "
                    "unless --all, which reads every one (each is hidden while it is read, "
                    "then put back). A refused job is listed under its own id even when it "
                    "was refused before it had a key.\n\nExamples:\n"
                    "  python -m ops deadletters list\n"
                    "  python -m ops deadletters list --queue rejected --since 2h --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _filters(ls)
    ls.add_argument("--all", action="store_true", help="read every message, not only 32")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    tgt.add_arguments(ls)
    ls.set_defaults(run=run_list)

    sh = sub.add_parser(
        "show", help="one dead letter: its envelope and original message",
        description="One dead letter by its message id (from `list`): the envelope's "
                    "fields, whether it can be replayed, and the original message (JSON "
                    "indented, base64 decoded). Exits 3 when no dead letter has that id.\n\n"
                    "Examples:\n"
                    "  python -m ops deadletters show <message-id>\n"
                    "  python -m ops deadletters show <message-id> --original > job.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sh.add_argument("message_id", metavar="MESSAGE_ID")
    sh.add_argument("--queue", choices=QUEUES, help="one queue (default: both)")
    how = sh.add_mutually_exclusive_group()
    how.add_argument("--json", action="store_true",
                     help="one JSON object: the facts, the envelope and the original")
    how.add_argument("--raw", action="store_true", help="the message exactly as it is queued")
    how.add_argument("--original", action="store_true",
                     help="only the original message, as its producer sent it")
    tgt.add_arguments(sh)
    sh.set_defaults(run=run_show)

    replay.add_parser(sub, _filters)

    de = sub.add_parser(
        "delete", help="discard dead letters (asks first; --yes to skip)",
        description="Delete dead letters by message id, for good (there is no undo: "
                    "`show --raw` first to keep a copy). Asks on a terminal; --yes deletes "
                    "without asking (and is needed when not on a terminal). Exits 3 when an "
                    "id is not found (the others are deleted).\n\nExample:\n"
                    "  python -m ops deadletters delete <message-id> <message-id> --yes\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    de.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    de.add_argument("--queue", choices=QUEUES, help="one queue (default: both)")
    de.add_argument("--yes", action="store_true", help="delete without asking")
    tgt.add_arguments(de)
    de.set_defaults(run=run_delete)
