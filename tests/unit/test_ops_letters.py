"""Any queue message, whatever its text, is a dead letter the tools can list, show and
decide about without raising (issue 19, point 4): property tests over arbitrary text and
over envelopes whose fields hold anything."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops import deadletters as dl
from ops import letters, replay, target
from shared import deadletters
from shared.settings import Settings

NOW = 1_795_000_000.0
ROOT = Path(__file__).resolve().parents[2]

# Text as a producer or the host may leave it: any code point, lone surrogates included.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=300)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12)
ENVELOPES = st.fixed_dictionaries(
    {"kind": st.sampled_from(deadletters.KINDS), "reason": JSON_VALUES},
    optional={name: JSON_VALUES for name in (
        "twilio_code", "job_key", "at", "original", "original_base64", "original_truncated",
        "original_bytes", "envelope_version", "queue_message_id")},
).map(lambda doc: json.dumps(doc))
NASTY = [
    '{"type": "sms", "to": "+15551234567", "body": "x", "validity_period": ' + "9" * 5000 + "}",
    '{"type": "sms", "to": "+15551234567", "body": "hi \\ud800"}',
    "[" * 20_000 + "]" * 20_000,
    '{"kind": "invalid_job", "reason": "r", "original": ' + "[" * 50_000 + "}",
    base64.b64encode(bytes(range(256)) * 40).decode(),
    "x" * 70_000,
    "",
    "\ud800",
    '{"kind": "twilio_permanent", "reason": {"a": 1}, "job_key": ["k"], "twilio_code": '
    + "1" * 4000 + ', "at": "yesterday", "original_base64": 5}',
    '{"kind": "no_sender", "reason": "r", "at": "9999-12-31T23:59:59+14:00", "original": '
    '"{\\"type\\": \\"sms\\", \\"to\\": \\"+15551234567\\", \\"body\\": \\"b\\"}"}',
]


def message(content: str) -> Any:
    return SimpleNamespace(id="m1", content=content, pop_receipt="p",
                           inserted_on=dt.datetime.fromtimestamp(NOW - 60, dt.UTC))


class NoRows:
    """A jobs table that holds no row."""

    async def get_entity(self, partition: str, key: str) -> Any:
        raise ResourceNotFoundError("The specified resource does not exist.")


class Session:
    target = target.Target("Azurite", Settings(key_vault_url=None))

    def table(self) -> NoRows:
        return NoRows()


def every_view(content: str) -> None:
    """What list, show and replay read of a message: none of it may raise, and all of it
    must be printable (stdout escapes what UTF-8 cannot carry)."""
    letter = letters.Letter.read("poison", message(content))
    row = dl.row_of(letter, NOW)
    assert len(row) == 7 and all(isinstance(cell, str) for cell in row)
    json.dumps(dl.facts(letter, "q-poison", NOW), ensure_ascii=False)
    shown = dl.render(letter, "q-poison", "Azurite", NOW)
    shown.encode("utf-8", "backslashreplace")
    decision = asyncio.run(replay.Planner(Session(), None, "-", None, NOW)  # type: ignore[arg-type]
                           .decide(letter))
    assert decision.action in ("replay", "skip")
    assert (decision.action == "skip") == bool(letter.why_not())
    if decision.action == "replay":
        assert decision.text is not None
        decision.text.encode("utf-8")  # it can be queued


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT)
def test_any_text_is_a_dead_letter_the_tools_can_read(content: str) -> None:
    every_view(content)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENVELOPES)
def test_an_envelope_with_anything_in_its_fields_can_be_read(content: str) -> None:
    every_view(content)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_as_base64_text_can_be_read(raw: bytes) -> None:
    every_view(base64.b64encode(raw).decode())


def test_the_nasty_ones_are_read_and_say_why_they_cannot_be_replayed() -> None:
    for content in NASTY:
        every_view(content)
    why = [letters.Letter.read("poison", message(c)).why_not() for c in NASTY]
    assert why[0].startswith("message is not a job") and "Exceeds the limit (4300 digits)" \
        in why[0]
    assert why[1].startswith("field 'body': ") and "unpaired surrogate" in why[1]
    assert why[2] == "message is not a job: its JSON is nested too deeply"
    assert why[8] == "the envelope holds no original"
    cut = letters.Letter.read("poison", message(NASTY[8]))
    assert (cut.kind, cut.job_key, cut.twilio_code, cut.at) == (
        "twilio_permanent", None, None, NOW - 60)  # wrong types are not taken as values


def test_a_refused_job_without_a_key_in_its_envelope_is_found_by_its_own_id() -> None:
    refused = deadletters.envelope(
        kind="invalid_job", reason="field 'bodyy' is not allowed",
        original='{"id": "typo-1", "type": "sms", "to": "+15551234567", "bodyy": "Hi"}',
        queue_message_id="q1", job_key=None, twilio_code=None, dequeue_count=1, at=NOW)
    letter = letters.Letter.read("rejected", message(refused))
    assert letter.job_key == "typo-1"
    assert letters.Selection(job_keys=frozenset({"typo-1"})).matches(letter)


def test_the_poison_window_covers_every_delivery_host_json_allows() -> None:
    """A job the host moved to -poison was delivered maxDequeueCount times, each at most
    functionTimeout long and then hidden visibilityTimeout: all within the window a replay
    looks back over at Twilio."""
    host = json.loads((ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]

    def seconds(span: str) -> int:
        h, m, s = map(int, re.fullmatch(r"(\d+):(\d+):(\d+)", span).groups())  # type: ignore[union-attr]
        return h * 3600 + m * 60 + s

    bound = queues["maxDequeueCount"] * (seconds(host["functionTimeout"])
                                         + seconds(queues["visibilityTimeout"]))
    assert bound == 1650 and replay.POISON_WINDOW_SECONDS >= 2 * bound
