"""`python -m ops deadletters list|replay`: what is in `<queue>-rejected` and `-poison`, why,
and sending it again.

A dead letter is an envelope (`shared.deadletters`): kind, reason, Twilio code, job key and
the original message. The Functions host's own poison move (a crash repeated
maxDequeueCount times) leaves the original text in -poison as it was: kind `host_poison`.

Replay re-enqueues the original on the outbound queue after checking it against the job
schema again, under the id the ledger needs: an id the ledger holds as rejected, failed or
unknown is never sent again, so such a job gets a new one, derived from the old
(`order-1042` -> `order-1042.r1` -> `order-1042.r2`), and shown. The same dead letter always
gets the same new id, so a replay cut short and run again never sends twice. The dead letter
is deleted only after the enqueue succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ops import target as tgt
from ops.jobs import fetch
from ops.text import since, span, table
from shared import deadletters, jobs
from shared.ledger import BURNED_STATUSES

HOST_POISON = "host_poison"
KINDS = (*deadletters.KINDS, HOST_POISON)
QUEUES = ("rejected", "poison")
PEEK_MAX = 32  # the queue service peeks at most 32 messages
HOLD_SECONDS = 600  # how long a scan keeps a message it read hidden (released at the end)
PROGRESS_EVERY = 250  # letters, or ...
PROGRESS_SECONDS = 5.0  # ... seconds, whichever comes first
_REPLAY_SUFFIX = re.compile(r"^(?P<base>.+)\.r(?P<n>[0-9]+)$")


# -- reading -----------------------------------------------------------------------------

@dataclass
class Letter:
    queue: str  # "rejected" or "poison"
    message: Any  # the SDK's QueueMessage
    envelope: dict[str, Any] | None

    @classmethod
    def read(cls, queue: str, message: Any) -> Letter:
        return cls(queue, message, deadletters.parse(message.content or ""))

    @property
    def id(self) -> str:
        return str(self.message.id)

    @property
    def kind(self) -> str:
        return str(self.envelope["kind"]) if self.envelope else HOST_POISON

    @property
    def reason(self) -> str:
        if self.envelope:
            return str(self.envelope.get("reason", ""))
        return ("the function failed on it maxDequeueCount times; the Functions host moved "
                "it here as it was")

    @property
    def twilio_code(self) -> int | None:
        code = (self.envelope or {}).get("twilio_code")
        return int(code) if isinstance(code, int) else None

    @cached_property
    def job_key(self) -> str | None:
        if self.envelope:
            return self.envelope.get("job_key")
        try:  # the host's poison move keeps the job itself: its id is its key
            return jobs.parse(self.message.content or "").id
        except jobs.JobRejected:
            return None

    @property
    def at(self) -> float:
        """When it became a dead letter (epoch seconds)."""
        stamp = (self.envelope or {}).get("at")
        if isinstance(stamp, str):
            try:
                return dt.datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                pass
        inserted = getattr(self.message, "inserted_on", None)
        return inserted.timestamp() if inserted else 0.0

    def original(self) -> tuple[str | None, str]:
        """The original message text, or None and why it cannot be had."""
        env = self.envelope
        if env is None:
            return self.message.content or "", ""
        if env.get("original_truncated"):
            return None, (f"its original ({env.get('original_bytes')} bytes) was cut to fit "
                          f"the queue; only its sha256 {env.get('original_sha256')} is kept")
        if "original" in env:
            return str(env["original"]), ""
        if "original_base64" in env:
            try:
                return base64.b64decode(env["original_base64"]).decode("utf-8"), ""
            except (binascii.Error, UnicodeDecodeError):
                return None, "its original is not UTF-8 text, so not a job"
        return None, "the envelope holds no original"


class Reader:
    """A dead-letter queue, page by page. Without `scan`: one peek (at most 32 messages,
    nothing changes). With `scan`: every message, each hidden for HOLD_SECONDS once read;
    `release()` puts back every one not deleted."""

    def __init__(self, client: Any, *, scan: bool) -> None:
        self.client = client
        self.scan = scan
        self.held: dict[str, Any] = {}

    async def pages(self) -> AsyncIterator[list[Any]]:
        if not self.scan:
            yield list(await self.client.peek_messages(max_messages=PEEK_MAX))
            return
        seen: set[str] = set()
        while True:
            page = [m async for m in self.client.receive_messages(
                messages_per_page=PEEK_MAX, max_messages=PEEK_MAX,
                visibility_timeout=HOLD_SECONDS)]
            for m in page:
                self.held[m.id] = m  # the latest pop receipt wins
            fresh = [m for m in page if m.id not in seen]
            if not fresh:  # only messages read before came back: all read
                return
            seen.update(m.id for m in fresh)
            yield fresh

    async def delete(self, message: Any) -> None:
        await self.client.delete_message(message)
        self.held.pop(message.id, None)

    async def release(self) -> int:
        """Make held messages visible again; returns how many could not be (they reappear
        by themselves within HOLD_SECONDS)."""
        from azure.core.exceptions import HttpResponseError

        failed = 0
        for message in self.held.values():
            try:
                await self.client.update_message(message, visibility_timeout=0)
            except HttpResponseError:
                failed += 1
        self.held.clear()
        return failed


async def count(client: Any) -> int | None:
    """Approximate messages on the queue; None when there is no such queue."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return int((await client.get_queue_properties()).approximate_message_count or 0)
    except ResourceNotFoundError:
        return None


# -- selecting ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """Options combine with AND; the values of one option with OR."""

    ids: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    job_keys: frozenset[str] = frozenset()
    since: float | None = None

    @property
    def anything(self) -> bool:
        return bool(self.ids or self.kinds or self.job_keys or self.since is not None)

    def matches(self, letter: Letter) -> bool:
        return ((not self.ids or letter.id in self.ids)
                and (not self.kinds or letter.kind in self.kinds)
                and (not self.job_keys or letter.job_key in self.job_keys)
                and (self.since is None or letter.at >= self.since))


def selection(args: argparse.Namespace, now: float) -> Selection:
    try:
        start = since(args.since, now) if args.since else None
    except ValueError as exc:
        raise tgt.OpsError(str(exc)) from None
    return Selection(frozenset(getattr(args, "message_ids", None) or ()),
                     frozenset(args.kind or ()), frozenset(args.job or ()), start)


def queue_names(args: argparse.Namespace, target: tgt.Target) -> list[tuple[str, str]]:
    names = {"rejected": target.names.rejected_queue_name,
             "poison": target.names.poison_queue_name}
    return [(q, names[q]) for q in ([args.queue] if args.queue else QUEUES)]


# -- list --------------------------------------------------------------------------------

def row_of(letter: Letter, now: float) -> list[str]:
    return [span(now - letter.at), letter.queue, letter.kind,
            str(letter.twilio_code or "-"), letter.job_key or "-", letter.id,
            " ".join(letter.reason.split())]


def replayable(letter: Letter) -> bool:
    text, _ = letter.original()
    if text is None:
        return False
    try:
        jobs.parse(text)
    except jobs.JobRejected:
        return False
    return True


def as_json(letter: Letter, queue_name: str, now: float) -> str:
    return json.dumps({
        "queue": letter.queue, "queue_name": queue_name, "message_id": letter.id,
        "kind": letter.kind, "reason": letter.reason, "twilio_code": letter.twilio_code,
        "job_key": letter.job_key,
        "at": dt.datetime.fromtimestamp(letter.at, dt.UTC).isoformat(),
        "age_seconds": round(now - letter.at), "replayable": replayable(letter)},
        ensure_ascii=False)


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
                            line = as_json(letter, name, now) if args.json else None
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


# -- replay ------------------------------------------------------------------------------

def next_id(key: str) -> str:
    """The id a burned `key` is sent again under: `.r1`, then `.r2` ..., always a valid job
    id (`shared.jobs.valid_id`: a long key is cut and keeps a hash of its full text)."""
    longest = int(jobs.schema()["properties"]["id"]["maxLength"])
    m = _REPLAY_SUFFIX.match(key)
    base, n = (m["base"], int(m["n"])) if m else (key, 0)
    suffix = f".r{n + 1}"
    if len(base) + len(suffix) > longest:
        base = base[:longest - len(suffix) - 9] + "." + \
            hashlib.sha256(base.encode()).hexdigest()[:8]
    new = base + suffix
    if not jobs.valid_id(new):
        raise ValueError(f"derived id {new!r} is not a valid job id")
    return new


@dataclass(frozen=True)
class Decision:
    action: str  # replay, already (sent or replayed: drop the dead letter), skip
    note: str
    key: str | None = None
    new_id: str | None = None
    text: str | None = None


async def decide(session: tgt.Session, letter: Letter, *, named: bool = False) -> Decision:
    """What replaying `letter` means, from its original and the ledger. `named`: the person
    asked for this dead letter by its message id or its kind."""
    if letter.kind == "outcome_unknown" and not named:
        return Decision("skip", "Twilio may have sent it already: check the Twilio console, "
                                "then replay it by its message id or with --kind "
                                "outcome_unknown")
    text, why = letter.original()
    if text is None:
        return Decision("skip", f"cannot be replayed: {why}")
    try:
        jobs.parse(text)
    except jobs.JobRejected as exc:
        return Decision("skip", f"still not a valid job ({exc}): fix it and enqueue it")
    doc = json.loads(jobs.decode_text(text))
    # No id and no key (the host's poison move of a job without id): one derived from this
    # dead letter, so running the replay again finds it in the ledger.
    key = doc.get("id") or letter.job_key or f"replay-{letter.id}"
    row = await fetch(session, key, table_required=False)
    status = (row or {}).get("status")
    if status == "sent":
        return Decision("already", f"{key} was sent already (SID {row and row.get('sid')}): "
                                   "nothing to send", key)
    new_id = key
    note = f"{key} (same id: {status or 'not in the ledger'})"
    if status in BURNED_STATUSES:
        new_id = next_id(key)
        later = await fetch(session, new_id, table_required=False)
        if later is not None:
            return Decision("already", f"{key} was replayed already as {new_id} "
                                       f"({later.get('status')})", key, new_id)
        note = f"{key} -> {new_id} (new id: {key} is {status} in the ledger)"
    doc["id"] = new_id
    try:
        jobs.from_dict(doc)
    except jobs.JobRejected as exc:
        return Decision("skip", f"not valid under id {new_id!r}: {exc}", key)
    return Decision("replay", note, key, new_id, json.dumps(doc, ensure_ascii=False))


class Tally:
    """Counts, progress lines on long runs, and the closing summary."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.counts: Counter[str] = Counter()
        self.read = 0
        self._last = time.monotonic()
        self._last_read = 0

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def progress(self) -> None:
        if self.read - self._last_read >= PROGRESS_EVERY or \
                time.monotonic() - self._last >= PROGRESS_SECONDS:
            c = self.counts
            print(f"... {self.read} dead letters read: {c['replayed']} replayed, "
                  f"{c['already']} already done, {c['skip']} skipped, {c['failed']} failed",
                  file=sys.stderr, flush=True)
            self._last, self._last_read = time.monotonic(), self.read

    def summary(self) -> str:
        c = self.counts
        verb = "Would replay" if self.dry_run else "Replayed"
        text = (f"{verb} {c['replayed']} ({c['new_id']} under a new id); already sent or "
                f"replayed {c['already']} ({'would be' if self.dry_run else 'dead letter'} "
                f"removed); skipped {c['skip']}; failed {c['failed']}; not selected "
                f"{c['unselected']} (left as they were).")
        return text + (" Dry run: nothing was changed." if self.dry_run else "")


async def replay_one(session: tgt.Session, reader: Reader, letter: Letter, outbound: str,
                     dry_run: bool, named: bool = False) -> tuple[str, str, Decision]:
    """(outcome, the line to print, the decision)."""
    d = await decide(session, letter, named=named)
    outcome, line = await _carry_out(session, reader, letter, outbound, dry_run, d)
    return outcome, line, d


async def _carry_out(session: tgt.Session, reader: Reader, letter: Letter, outbound: str,
                     dry_run: bool, d: Decision) -> tuple[str, str]:
    label = f"{letter.queue:<8} {letter.kind:<17}"
    if d.action == "skip":
        return "skip", f"{'skipped':<12} {label} {letter.id}: {d.note}"
    if dry_run:
        verb = "would replay" if d.action == "replay" else "would drop"
        return ("replayed" if d.action == "replay" else "already"), f"{verb:<12} {label} {d.note}"
    if d.action == "replay":
        try:
            await session.queue(outbound).send_message(d.text)
        except Exception as exc:  # noqa: BLE001 - reported, the dead letter is kept
            why = session.explain(exc) or f"{type(exc).__name__}: {exc}"
            return "failed", f"{'failed':<12} {label} {d.note}: not enqueued ({why}); kept"
    try:
        await reader.delete(letter.message)
    except Exception as exc:  # noqa: BLE001 - the enqueue stands; a second replay is safe
        why = session.explain(exc) or f"{type(exc).__name__}: {exc}"
        return "failed", (f"{'failed':<12} {label} {d.note}: enqueued, but the dead letter was not "
                          f"deleted ({why}); replaying it again sends nothing twice")
    verb = "replayed" if d.action == "replay" else "dropped"
    return ("replayed" if d.action == "replay" else "already"), f"{verb:<12} {label} {d.note}"


async def run_replay(args: argparse.Namespace) -> int:
    chosen = selection(args, time.time())
    if not (chosen.anything or args.all):
        raise tgt.OpsError("say what to replay: message ids, --job, --kind, --since, or --all")
    target = tgt.resolve(args)
    outbound = target.names.outbound_queue_name
    tally = Tally(args.dry_run)
    async with tgt.Session(target) as session:
        for queue, name in queue_names(args, target):
            client = session.queue(name)
            total = await count(client)
            if total is None:
                continue
            reader = Reader(client, scan=not args.dry_run or total > PEEK_MAX)
            try:
                async for page in reader.pages():
                    letters = [Letter.read(queue, m) for m in page]
                    tally.read += len(letters)
                    picked = [x for x in letters if chosen.matches(x)]
                    tally.counts["unselected"] += len(letters) - len(picked)
                    results = await asyncio.gather(*(replay_one(
                        session, reader, x, outbound, args.dry_run,
                        named=x.id in chosen.ids or x.kind in chosen.kinds) for x in picked))
                    for outcome, line, decision in results:
                        tally.add(outcome)
                        if outcome == "replayed" and decision.new_id != decision.key:
                            tally.add("new_id")
                        print(line, flush=True)
                    tally.progress()
            finally:
                await reader.release()
    print(tally.summary())
    return 1 if tally.counts["failed"] else 0


# -- command line ------------------------------------------------------------------------

def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", choices=QUEUES, help="one queue (default: both)")
    p.add_argument("--kind", action="append", choices=KINDS, metavar="KIND",
                   help=f"only this kind (repeatable): {', '.join(KINDS)}")
    p.add_argument("--job", action="append", metavar="KEY", help="only this job key (repeatable)")
    p.add_argument("--since", metavar="WHEN",
                   help="only dead letters since: 30m, 2h, 7d, or an ISO date (UTC)")


def add_parser(commands: Any) -> None:
    dl = commands.add_parser("deadletters", help="list and replay dead letters",
                             description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = dl.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser(
        "list", help="a table of kind, reason, Twilio code, job key and age",
        description="List the dead letters of <queue>-rejected and -poison, oldest first. "
                    "A peek: nothing changes. A queue holding more than 32 shows its first 32 "
                    "unless --all, which reads every one (each is hidden while it is read, "
                    "then put back).")
    _filters(ls)
    ls.add_argument("--all", action="store_true", help="read every message, not only 32")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    tgt.add_arguments(ls)
    ls.set_defaults(run=run_list)
    rp = sub.add_parser(
        "replay", help="send dead letters again (one, a filtered set, or --all)",
        description=__doc__ + "\nSelect with message ids (from `list`), --job, --kind, "
                    "--since, or --all. Dead letters that cannot be replayed (cut, or still "
                    "not a valid job) are said so and kept. An outcome_unknown one (Twilio "
                    "may have sent it) is replayed only when named by its message id or "
                    "--kind outcome_unknown.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID",
                    help="dead letters by message id (see `list`)")
    _filters(rp)
    rp.add_argument("--all", action="store_true", help="every dead letter the filters allow")
    rp.add_argument("--dry-run", action="store_true",
                    help="say what would happen; send and delete nothing")
    tgt.add_arguments(rp)
    rp.set_defaults(run=run_replay)

