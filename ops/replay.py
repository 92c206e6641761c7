"""`python -m ops deadletters replay`: send dead letters again, never a job twice.

Replay re-enqueues the original on the outbound queue after checking it against the job
schema again, under the key the ledger needs:

- A job whose key the ledger does not hold, or holds as `sending` or `retrying`, goes under
  that same key, so the worker treats it as a redelivery: where an earlier attempt may have
  reached Twilio it looks there first (`shared.ledger.assess`).
- A key the ledger holds as rejected, failed or unknown is burned (never sent again), so the
  job gets a new id derived from the old (`order-1042` -> `order-1042.r1` -> `.r2`). For an
  `unknown` one (Twilio may have it) that new id's row is written first, `retrying` with the
  old row's `check_since`: the worker looks at Twilio before it sends.
- A job without an `id` that the Functions host moved to -poison as it was has lost its key
  (`msg-<queue message id>`: the host's copy has a new message id). It goes under a key
  derived from the dead letter, `replay-<message id>`, whose row is written first, `retrying`
  with `check_since` two hours before the move (POISON_WINDOW_SECONDS; `--check-since` to
  look further back), so the worker looks at Twilio before it sends, exactly as a
  redelivery would. Likewise an `outcome_unknown` or host-moved job whose row is gone
  (retention deleted it): its key's row is written first, to look at Twilio.
- A dead letter whose `job_key` is not its original's (neither the job's id nor
  `msg-<its queue message id>`) is skipped: an edited letter cannot take over another job.

The same dead letter always gets the same key, so a replay cut short and run again never
sends twice; the dead letter is deleted only after the enqueue succeeded. `--dry-run` says
for each what will happen, including when it will fail the same way again, and why.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ops import appsettings
from ops import target as tgt
from ops.ledger import fetch
from ops.letters import (
    HOST_POISON,
    NOT_FOUND,
    PEEK_MAX,
    Letter,
    Reader,
    check_job,
    count,
    json_of,
    looked_in,
    queue_names,
    selection,
)
from ops.text import since, when
from shared import jobs
from shared.ledger import BURNED_STATUSES, FINAL_STATUSES, assess, job_partition
from shared.redaction import mask
from shared.settings import Settings

# The host moves a message to -poison after maxDequeueCount (5) failed deliveries. Each
# lasts at most functionTimeout (5 min); one cut off (an instance killed, as a deployment
# does on Flex Consumption) comes back only when the host's 10-minute lease on it ends,
# otherwise after visibilityTimeout (30 s): at most 5 x 15 = 75 minutes from the first
# delivery to the move. A send can only have happened in those deliveries, so looking from
# two hours before the move covers them.
POISON_WINDOW_SECONDS = 7200
# Dead letters whose job may have reached Twilio: its row must say so, or the look must be
# seeded. (`retries_exhausted` and `throttled` never reached it; the rest were refused.)
MAY_HAVE_SENT = frozenset({"outcome_unknown", HOST_POISON})
PROGRESS_EVERY = 250  # letters, or ...
PROGRESS_SECONDS = 5.0  # ... seconds, whichever comes first
_REPLAY_SUFFIX = re.compile(r"^(?P<base>.+)\.r(?P<n>[0-9]+)$")
# What Twilio's permanent refusals mean for a replay of the same job, by error code.
UNLESS = {
    21610: "the recipient opted out (it goes through once they text START)",
    21608: "a trial account sends only to verified numbers (verify it, or upgrade)",
    21606: "the From number cannot send this message (change 'from' or TWILIO_FROM_NUMBER)",
    21211: "the To number is not a valid phone number",
    21614: "the To number cannot receive SMS",
    21635: "the To number is a landline",
    21612: "Twilio cannot route it from this sender to this number",
    21617: "the body is over 1,600 characters",
}


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
    seed: dict[str, Any] | None = None  # the new key's ledger row, written first if absent


def seed_row(key: str, check_since: float, letter: Letter) -> dict[str, Any]:
    """A row the worker reads as a redelivery's: free to claim, Twilio to be looked at."""
    return {"PartitionKey": job_partition(key), "RowKey": key, "status": "retrying",
            "check_since": check_since, "attempts": 0,
            "replay_of": f"dead letter {letter.id} ({letter.kind})"}


class Planner:
    """What replaying a dead letter means, from its original, the ledger and the target's
    settings (None when they cannot be known from here)."""

    def __init__(self, session: tgt.Session, settings: Settings | None, about: str,
                 check_since: float | None, now: float) -> None:
        self.session = session
        self.settings = settings
        self.about = about
        self.check_since = check_since
        self.now = now

    async def _row(self, key: str) -> dict[str, Any] | None:
        return await fetch(self.session, key, table_required=False)

    def _look(self, row: dict[str, Any] | None) -> float:
        """Since when the worker will look at Twilio before sending under `row` (0: it
        sends without looking)."""
        if row is None:
            return 0.0
        state, look_since = assess(row, "", self.now)
        return look_since if state == "claim" else 0.0

    async def decide(self, letter: Letter) -> Decision:
        text, why = letter.original()
        if text is None:
            return Decision("skip", f"cannot be replayed: {why}")
        job, why = check_job(text)
        if job is None:
            return Decision("skip", f"still not a valid job ({why}): fix it and enqueue it")
        doc = json_of(text)
        claimed = letter.job_key
        if claimed and claimed not in (job.id, f"msg-{letter.envelope_message_id}"):
            # A dead letter names the key its original had: its id, or msg-<its queue
            # message id>. Any other key would let an edited letter take over another job.
            return Decision("skip", f"its job key {claimed!r} is not its original's "
                                    "(neither the job's id nor msg-<its queue message id>): "
                                    "not replayed", claimed)
        known = job.id or claimed
        key = known or f"replay-{letter.id}"
        row = await self._row(key)
        status = (row or {}).get("status")
        if status == "sent":
            return Decision("already", f"{key} was sent already (SID {(row or {}).get('sid')})"
                                       ": nothing to send", key)
        new_id, seed, look = key, None, self._look(row)
        if status in BURNED_STATUSES:
            new_id = next_id(key)
            later = await self._row(new_id)
            if later is not None and later.get("status") in FINAL_STATUSES:
                return Decision("already", f"{key} was replayed already as {new_id} "
                                           f"({later.get('status')})", key, new_id)
            note = f"{key} -> {new_id}, a new id ({key} is {status})"
            look = self._look(later)
            if later is None and status == "unknown":
                assert row is not None
                seed = seed_row(new_id, self._since(
                    float(row.get("check_since") or 0) or float(row.get("claimed_at") or 0),
                    letter), letter)
        elif known is None and row is None:
            how = "the host moved it as it was" if letter.kind == HOST_POISON else \
                "its dead letter names no key"
            note = f"{key}, a new key (the job has no id and {how}: the key it had cannot be " \
                "known)"
            seed = seed_row(key, self._since(0.0, letter), letter)
        elif row is None and letter.kind in MAY_HAVE_SENT:
            # Its row is gone (retention deleted it, or it was never written while storage
            # was down): an attempt may have reached Twilio, so the worker looks first.
            note = f"{key} under the same key (no row left: it may have been sent)"
            seed = seed_row(key, self._since(0.0, letter), letter)
        elif row is None:
            note = f"{key} under the same key (no row: it was never claimed, so never sent)"
        else:
            note = f"{key} under the same key (row: {status})"
        if seed is not None:
            look = float(seed["check_since"])
        doc["id"] = new_id
        try:
            jobs.from_dict(doc)
        except jobs.JobRejected as exc:
            return Decision("skip", f"not valid under id {new_id!r}: {exc}", key)
        parts = [note]
        if look:
            what = "message" if job.type == "sms" else "call"
            parts.append(f"will look at Twilio for a {what} to {mask(job.to)} since "
                         f"{when(look)} before sending")
        again = self.again(letter, job, new_id)
        if again:
            parts.append(f"will fail the same way again: {again}")
        return Decision("replay", "; ".join(parts), key, new_id,
                        json.dumps(doc, ensure_ascii=False), seed)

    def _since(self, recorded: float, letter: Letter) -> float:
        """Since when the worker looks at Twilio: the earliest of what the ledger recorded,
        what the dead letter recorded, and the operator's --check-since (which widens the
        look, never narrows it); without any, the poison window before the dead letter."""
        known = [t for t in (recorded, letter.check_since, self.check_since) if t]
        return min(known) if known else letter.at - POISON_WINDOW_SECONDS

    def again(self, letter: Letter, job: jobs.Job, key: str) -> str:
        """Why the replay will be refused like the original was ("" when nothing says so)."""
        if self.settings is not None:
            try:
                jobs.prepare(job, self.settings, key)
            except jobs.JobRejected as exc:
                return f"{exc} (in the settings of {self.about})"
        code = letter.twilio_code
        if letter.kind == "twilio_permanent" and code:
            return (f"Twilio refused this job for good (error {code}"
                    + (f": {UNLESS[code]}" if code in UNLESS else "")
                    + f") and it goes again unchanged, to {mask(job.to)}")
        return ""


async def write_seed(session: tgt.Session, row: dict[str, Any]) -> None:
    """The row, unless one exists (a replay cut short wrote it: it stands)."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    table = session.table()
    for _ in range(2):
        try:
            await table.create_entity(row)
            return
        except ResourceExistsError:
            return
        except ResourceNotFoundError:  # no table yet: nothing was processed there
            try:
                await table.create_table()
            except ResourceExistsError:
                pass
    await table.create_entity(row)


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


async def replay_one(session: tgt.Session, planner: Planner, reader: Reader, letter: Letter,
                     outbound: str, dry_run: bool) -> tuple[str, str, Decision]:
    """(outcome, the line to print, the decision)."""
    d = await planner.decide(letter)
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
            if d.seed is not None:
                await write_seed(session, d.seed)
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


def target_settings(target: tgt.Target) -> tuple[Settings | None, str]:
    """The settings of the app behind `target`, to foresee refusals; None when unknown."""
    app = appsettings.for_target(target)
    if app is None:
        return None, "the deployment"
    try:
        return app.settings(), app.about
    except tgt.OpsError:
        return None, app.about


async def run_replay(args: argparse.Namespace) -> int:
    now = time.time()
    chosen = selection(args, now)
    if not (chosen.anything or args.all):
        raise tgt.OpsError("say what to replay: message ids, --job, --kind, --since, or --all")
    try:
        check_since = since(args.check_since, now) if args.check_since else None
    except ValueError as exc:
        raise tgt.OpsError(str(exc).replace("--since", "--check-since")) from None
    target = tgt.resolve(args)
    settings, about = target_settings(target)
    outbound = target.names.outbound_queue_name
    tally = Tally(args.dry_run)
    seen_ids: set[str] = set()
    seen_keys: set[str | None] = set()
    queues = queue_names(args, target)
    async with tgt.Session(target) as session:
        planner = Planner(session, settings, about, check_since, now)
        for queue, name in queues:
            client = session.queue(name)
            total = await count(client)
            if total is None:
                continue
            reader = Reader(client, scan=not args.dry_run or total > PEEK_MAX)
            try:
                async for page in reader.pages():
                    letters = [Letter.read(queue, m) for m in page]
                    tally.read += len(letters)
                    seen_ids.update(x.id for x in letters)
                    seen_keys.update(x.job_key for x in letters)
                    picked = [x for x in letters if chosen.matches(x)]
                    tally.counts["unselected"] += len(letters) - len(picked)
                    results = await asyncio.gather(*(replay_one(
                        session, planner, reader, x, outbound, args.dry_run) for x in picked))
                    for outcome, line, decision in results:
                        tally.add(outcome)
                        if outcome == "replayed" and decision.new_id != decision.key:
                            tally.add("new_id")
                        print(line, flush=True)
                    tally.progress()
            finally:
                await reader.release()
    print(tally.summary())
    missing = sorted(chosen.ids - seen_ids) + sorted(chosen.job_keys - seen_keys)
    if missing:
        print(f"not found: {', '.join(missing)} ({looked_in((n for _, n in queues), target)})",
              file=sys.stderr)
    return 1 if tally.counts["failed"] else NOT_FOUND if missing else 0


def add_parser(sub: Any, filters: Any) -> None:
    rp = sub.add_parser(
        "replay", help="send dead letters again (one, a filtered set, or --all)",
        description=__doc__ + "\nSelect with message ids (from `list`), --job, --kind, "
                    "--since, or --all. Dead letters that cannot be replayed (cut, or still "
                    "not a valid job) are said so and kept. A message id or job key that is "
                    "not there exits 3.\n\nExamples:\n"
                    "  python -m ops deadletters replay --all --dry-run\n"
                    "  python -m ops deadletters replay --kind no_sender --since 2h\n"
                    "  python -m ops deadletters replay <message-id> <message-id>\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID",
                    help="dead letters by message id (see `list`)")
    filters(rp)
    rp.add_argument("--all", action="store_true", help="every dead letter the filters allow")
    rp.add_argument("--dry-run", action="store_true",
                    help="say what would happen; write, send and delete nothing")
    rp.add_argument("--check-since", metavar="WHEN",
                    help="where the worker must look at Twilio first (a job that lost its "
                         "key, or whose outcome is unknown), look back to WHEN: 3h, 1d, or "
                         "an ISO date (UTC); default an hour before the dead letter")
    tgt.add_arguments(rp)
    rp.set_defaults(run=run_replay)
