"""Dead letters as the tools read them from `<queue>-rejected` and `-poison`, whatever they
hold.

A dead letter is an envelope (`shared.deadletters`): kind, reason, Twilio code, job key and
the original message. The Functions host's own poison move (a crash repeated
maxDequeueCount times) leaves the original text in -poison as it was: kind `host_poison`.
Nothing here trusts a message's content: text that is not JSON, a number of 5,000 digits,
JSON nested 100,000 deep, a lone surrogate, an "envelope" whose fields have the wrong types
... is still a dead letter, listed and shown, with the reason it cannot be replayed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ops import target as tgt
from ops.text import since
from shared import deadletters, jobs

HOST_POISON = "host_poison"
KINDS = (*deadletters.KINDS, HOST_POISON)
QUEUES = ("rejected", "poison")
PEEK_MAX = 32  # the queue service peeks at most 32 messages
HOLD_SECONDS = 600  # how long a scan keeps a message it read hidden (released at the end)
NOT_FOUND = 3
# What reading a message's text as JSON can raise: not JSON, an integer of more than 4,300
# digits (ValueError), nesting deeper than the interpreter's recursion limit.
UNREADABLE = (ValueError, RecursionError, TypeError)


def json_of(text: str) -> Any:
    """`text` as JSON (plain or base64, as a job may be), or None when it is not."""
    try:
        return json.loads(jobs.decode_text(text))
    except UNREADABLE:
        return None


def check_job(text: str) -> tuple[jobs.Job | None, str]:
    """The job in `text`, or None and why it is not one."""
    try:
        job = jobs.parse(text)
    except jobs.JobRejected as exc:
        return None, str(exc)
    except UNREADABLE as exc:
        return None, f"message is not a job ({type(exc).__name__}: {str(exc)[:200]})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, "its text is not valid Unicode (a lone surrogate): it cannot be queued"
    return job, ""


@dataclass
class Letter:
    queue: str  # "rejected" or "poison"
    message: Any  # the SDK's QueueMessage
    envelope: dict[str, Any] | None

    @classmethod
    def read(cls, queue: str, message: Any) -> Letter:
        try:
            envelope = deadletters.parse(message.content or "")
        except UNREADABLE:
            envelope = None
        return cls(queue, message, envelope)

    @property
    def id(self) -> str:
        return str(self.message.id)

    @property
    def content(self) -> str:
        return str(self.message.content or "")

    @property
    def kind(self) -> str:
        return str(self.envelope["kind"]) if self.envelope else HOST_POISON

    @property
    def reason(self) -> str:
        if self.envelope:
            reason = self.envelope.get("reason")
            return reason if isinstance(reason, str) else json.dumps(reason)[:1000]
        return ("the function failed on it maxDequeueCount times; the Functions host moved "
                "it here as it was")

    @property
    def twilio_code(self) -> int | None:
        code = (self.envelope or {}).get("twilio_code")
        return code if type(code) is int and 0 < code < 10**6 else None

    @cached_property
    def job_key(self) -> str | None:
        """The envelope's job key; else, as for the host's poison move, the original's own
        `id` (a job refused before it had a key is found by the id its producer gave)."""
        key = (self.envelope or {}).get("job_key")
        if isinstance(key, str) and key:
            return key
        text, _ = self.original()
        doc = json_of(text) if text is not None else None
        found = doc.get("id") if isinstance(doc, dict) else None
        return found if isinstance(found, str) and found else None

    @property
    def envelope_message_id(self) -> str | None:
        """The queue message id of the original, as its envelope recorded it."""
        value = (self.envelope or {}).get("queue_message_id")
        return value if isinstance(value, str) and value else None

    @property
    def check_since(self) -> float:
        """Since when an attempt may have reached Twilio, as the worker recorded it in the
        envelope of an outcome_unknown letter (0: not recorded)."""
        value = (self.envelope or {}).get("check_since")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return 0.0
        return float(value) if 0 < value < 1e11 else 0.0

    @property
    def at(self) -> float:
        """When it became a dead letter (epoch seconds)."""
        stamp = (self.envelope or {}).get("at")
        if isinstance(stamp, str):
            try:
                moment = dt.datetime.fromisoformat(stamp)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=dt.UTC)
                return moment.timestamp()
            except (ValueError, OverflowError):
                pass
        inserted = getattr(self.message, "inserted_on", None)
        return inserted.timestamp() if inserted else 0.0

    def original(self) -> tuple[str | None, str]:
        """The original message text, or None and why it cannot be had."""
        env = self.envelope
        if env is None:
            return self.content, ""
        if env.get("original_truncated"):
            return None, (f"its original ({env.get('original_bytes')} bytes) was cut to fit "
                          f"the queue; only its sha256 {env.get('original_sha256')} is kept")
        if isinstance(env.get("original"), str):
            return env["original"], ""
        if isinstance(env.get("original_base64"), str):
            try:
                return base64.b64decode(env["original_base64"]).decode("utf-8"), ""
            except (binascii.Error, ValueError):
                return None, "its original is not UTF-8 text, so not a job"
        return None, "the envelope holds no original"

    def why_not(self) -> str:
        """Why it cannot be replayed as it is ("" when it can)."""
        text, why = self.original()
        if text is None:
            return why
        job, why = check_job(text)
        return "" if job is not None else why


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
        start = since(args.since, now) if getattr(args, "since", None) else None
    except ValueError as exc:
        raise tgt.OpsError(str(exc)) from None
    return Selection(frozenset(getattr(args, "message_ids", None) or ()),
                     frozenset(getattr(args, "kind", None) or ()),
                     frozenset(getattr(args, "job", None) or ()), start)


def queue_names(args: argparse.Namespace, target: tgt.Target) -> list[tuple[str, str]]:
    names = {"rejected": target.names.rejected_queue_name,
             "poison": target.names.poison_queue_name}
    return [(q, names[q]) for q in ([args.queue] if getattr(args, "queue", None) else QUEUES)]


def looked_in(names: Iterable[str], target: tgt.Target) -> str:
    """Where a search looked, for a not-found line."""
    return f"looked in {' and '.join(names)} on {target.where}"


async def find(session: tgt.Session, queues: list[tuple[str, str]], ids: Iterable[str], *,
               hold: bool = False) -> tuple[dict[str, tuple[Letter, Reader]], list[Reader]]:
    """The dead letters with these message ids, each with the reader that holds it. A peek
    finds a letter among the first 32 of a queue; past that (or with `hold`, to delete) the
    queue is read through. The caller releases the readers."""
    wanted = set(ids)
    found: dict[str, tuple[Letter, Reader]] = {}
    readers: list[Reader] = []
    for queue, name in queues:
        client = session.queue(name)
        total = await count(client)
        if not total:
            continue
        for scan in ((True,) if hold else (False, True) if total > PEEK_MAX else (False,)):
            if wanted <= found.keys():
                break
            reader = Reader(client, scan=scan)
            readers.append(reader)
            async for page in reader.pages():
                found.update((m.id, (Letter.read(queue, m), reader)) for m in page
                             if m.id in wanted)
                if wanted <= found.keys():
                    break
    return found, readers
