"""Outbound jobs: the queue message contract (schema version 1).

The schema is published in `shared/schemas/outbound-job.v1.json`; this module decodes a
queue message (plain or base64 text), validates it and turns it into a `Job`, then
`prepare` fills in what the settings supply (sender, Messaging Service, callbacks).

Validation is two-speed: a validator compiled once (fastjsonschema) decides, and only a job
it refuses goes through jsonschema, whose errors name the field (bench/validation.py).
Both read `$` in a pattern as the end of the text, as JSON Schema (ECMA-262) means it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.settings import Settings
from shared.storage import MAX_MESSAGE_BYTES

SCHEMA_PATH = Path(__file__).parent / "schemas" / "outbound-job.v1.json"
SCHEMA_VERSION = 1
MAX_TWIML_CHARS = 4000  # Twilio's limit for inline `Twiml` on a call
# Twilio schedules messages 15 minutes to 35 days ahead (errors 35114/35115).
SEND_AT_MIN_SECONDS = 15 * 60
SEND_AT_MAX_SECONDS = 35 * 24 * 3600
# No queue message is larger than this: a larger text cannot be a job, so it is refused
# before it is parsed (base64 text decodes to 3/4 of its length).
MAX_TEXT_CHARS = MAX_MESSAGE_BYTES
MAX_RAW_CHARS = MAX_MESSAGE_BYTES * 4 // 3 + 4


class JobRejected(ValueError):
    """The message is not a job we can send. The message says why, naming the field."""


class NoSender(JobRejected):
    """The job names no sender and the settings supply none that fits it."""


@dataclass(frozen=True)
class Job:
    type: str
    to: str
    id: str | None = None
    from_: str | None = None
    status_callback: str | None = None
    # sms
    body: str | None = None
    media_url: tuple[str, ...] = ()
    messaging_service_sid: str | None = None
    send_at: str | None = None
    content_sid: str | None = None
    content_variables: Mapping[str, str] | None = None
    validity_period: int | None = None
    shorten_urls: bool | None = None
    # call
    say: str | None = None
    twiml: str | None = None
    url: str | None = None
    voice: str | None = None
    language: str | None = None
    machine_detection: str | None = None
    machine_detection_timeout: int | None = None
    async_amd: bool | None = None
    async_amd_status_callback: str | None = None
    timeout: int | None = None
    time_limit: int | None = None
    record: bool | None = None
    send_digits: str | None = None
    caller_id: str | None = None

    @property
    def whatsapp(self) -> bool:
        return self.to.startswith("whatsapp:")

    @property
    def send_at_utc(self) -> dt.datetime | None:
        return None if self.send_at is None else _instant(self.send_at).astimezone(dt.UTC)


# JSON field name -> Job attribute: the same name except `from` (a Python keyword).
_ATTRS = {f.name.rstrip("_"): f.name for f in fields(Job)}
_INTEGERS = frozenset({"validity_period", "machine_detection_timeout", "timeout", "time_limit"})


def decode_text(raw: bytes | str) -> str:
    """The JSON text of a queue message, whether the producer base64-encoded it or not.

    A JSON object starts with `{`, which is not a base64 character, so the two cannot be
    confused. Anything else that decodes as base64 to a JSON object is taken as that.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise JobRejected("message is not UTF-8 text") from None
    stripped = raw.strip()
    if stripped.startswith("{"):
        return stripped
    try:
        decoded = base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return raw
    return decoded if decoded.lstrip().startswith("{") else raw


def parse(raw: bytes | str, *, clock: Callable[[], float] | None = time.time) -> Job:
    """The job in a queue message. Whatever the message holds, this returns a `Job` or
    raises `JobRejected` saying why: a producer's bytes never crash the worker."""
    doc = _document(raw)
    try:
        return from_dict(doc, clock=clock)
    except JobRejected:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A value Python cannot hold as the schema allows (checked: no known input gets
        # here, but a new field must not turn a bad job into a crash).
        raise JobRejected(f"message is not a job we can read ({type(exc).__name__}: "
                          f"{printable(str(exc))[:200]})") from None


def claimed_id(raw: bytes | str) -> str | None:
    """The `id` a refused message gives itself, if it has a valid one: so that a job refused
    for another reason is found under its own id (ops deadletters list --job)."""
    try:
        doc = _document(raw)
    except JobRejected:
        return None
    value = doc.get("id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and valid_id(value) else None


def _document(raw: bytes | str) -> Any:
    # Sizes first: nothing larger than a queue message is parsed, let alone validated.
    if len(raw) > MAX_RAW_CHARS:
        raise _too_large(len(raw))
    text = decode_text(raw)
    if len(text) > MAX_TEXT_CHARS:
        raise _too_large(len(text))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobRejected(f"message is not JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})") from None
    except RecursionError:
        raise JobRejected("message is not a job: its JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. a number of thousands of digits (int_max_str_digits)
        raise JobRejected(f"message is not a job: {printable(str(exc))[:200]}") from None


def printable(text: str) -> str:
    """`text` with lone surrogates (valid in JSON escapes, not in UTF-8) written as escapes,
    so that it can go in a log line, an envelope or a table row."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def from_dict(doc: Any, *, clock: Callable[[], float] | None = time.time) -> Job:
    """The job in `doc`, validated. With `clock`, a `send_at` is also checked against the
    window Twilio schedules in (`check_schedule`); the queue path checks that after its
    claim instead, so that a retry that falls outside it ends its row, not just itself."""
    if not isinstance(doc, dict):
        raise JobRejected(f"a job must be a JSON object, not {type(doc).__name__}")
    if not _fast_validator()(doc):
        raise JobRejected(explain(doc))
    if "twiml" in doc:
        _check_twiml(doc["twiml"])
    if "send_at" in doc:
        when = _check_send_at_format(doc["send_at"])
        if clock is not None:
            _check_window(doc["send_at"], when, clock())
    values: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "version":
            continue
        if name == "media_url":
            value = tuple(value)
        elif name == "content_variables":
            value = dict(value)
        elif name in _INTEGERS:
            value = int(value)  # JSON Schema counts 30.0 as an integer; Twilio wants "30"
        values[_ATTRS[name]] = value
    return Job(**values)


def to_dict(job: Job) -> dict[str, Any]:
    """The job as a schema-valid JSON object (the inverse of `from_dict`)."""
    doc: dict[str, Any] = {}
    for name, attr in _ATTRS.items():
        value = getattr(job, attr)
        if value is None or value == ():
            continue
        doc[name] = list(value) if isinstance(value, tuple) else \
            dict(value) if isinstance(value, Mapping) else value
    return doc


def prepare(job: Job, settings: Settings, key: str) -> Job:
    """The job as it is sent: the sender and Messaging Service from the settings where the
    job names none, and Twilio's callbacks pointed at the app's status route by default.

    Raises `NoSender` when no sender fits the job, and `JobRejected` (naming the field) for
    a combination the settings cannot complete.
    """
    route = (f"{settings.webhook_base_url}/api/status?job={quote(key, safe='')}"
             if settings.webhook_base_url else None)
    status_callback = job.status_callback or route
    if job.type == "call":
        sender = job.from_ or settings.from_number
        if not sender:
            raise NoSender("the job has no 'from' and TWILIO_FROM_NUMBER is not set")
        amd_callback = job.async_amd_status_callback
        if job.async_amd:
            amd_callback = amd_callback or route or status_callback
            if amd_callback is None:
                raise JobRejected(
                    "field 'async_amd': the result needs somewhere to go: give "
                    "'async_amd_status_callback' or 'status_callback', or set WEBHOOK_BASE_URL "
                    "(the app's status route)")
        return replace(job, from_=sender, status_callback=status_callback,
                       async_amd_status_callback=amd_callback)

    service = job.messaging_service_sid
    if service is None and (job.from_ is None or job.send_at or job.shorten_urls):
        service = settings.messaging_service_sid  # TWILIO_MESSAGING_SERVICE_SID wins
    sender = job.from_
    if sender is None and service is None:
        if job.whatsapp:
            raise NoSender(
                "field 'from': a WhatsApp job needs a WhatsApp sender: give 'from' "
                "(whatsapp:+E.164) or 'messaging_service_sid', or set "
                "TWILIO_MESSAGING_SERVICE_SID (TWILIO_FROM_NUMBER is an SMS number)")
        if not settings.from_number:
            raise NoSender("the job has no 'from' or 'messaging_service_sid', and "
                           "TWILIO_FROM_NUMBER is not set (nor TWILIO_MESSAGING_SERVICE_SID)")
        sender = settings.from_number
    if service is None:
        for name in ("send_at", "shorten_urls"):
            if getattr(job, name):
                raise JobRejected(
                    f"field '{name}': needs a Messaging Service: give "
                    "'messaging_service_sid' or set TWILIO_MESSAGING_SERVICE_SID")
    return replace(job, from_=sender, messaging_service_sid=service,
                   status_callback=status_callback)


def valid_id(text: str) -> bool:
    """Whether `text` is a job id as the schema's `id` defines it."""
    return len(text) <= schema()["properties"]["id"]["maxLength"] and \
        _id_pattern().fullmatch(text) is not None


@cache
def _id_pattern() -> re.Pattern[str]:
    return re.compile(schema()["properties"]["id"]["pattern"])


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# -- validators ---------------------------------------------------------------------------

# `$` (not after a backslash) means the end of the text in JSON Schema; in Python's `re` it
# also matches before a final newline, which would let "+15551234567\n" through.
_DOLLAR = re.compile(r"(?<!\\)\$")


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_DOLLAR.sub(r"\\Z", pattern))


@cache
def _fast_validator() -> Callable[[Any], bool]:
    """fastjsonschema compiles the schema into Python once: about 10x less CPU per job
    than jsonschema's validator, reused (bench/validation.py). It reads `$` as `\\Z`, and
    ignores keywords it does not implement: the schema keeps to those (tests/unit)."""
    import fastjsonschema

    check = fastjsonschema.compile(schema())

    def is_valid(doc: Any) -> bool:
        try:
            check(doc)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return is_valid


@cache
def _validator() -> Any:
    """jsonschema, for the errors of a refused job (every error, each with its path)."""
    # jsonschema is slow to import; only the queue path needs it, and only for bad jobs.
    from jsonschema import Draft202012Validator, ValidationError
    from jsonschema.validators import extend

    def pattern(validator: Any, patrn: str, instance: Any, _: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not _regex(patrn).search(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def within_bounds(keyword: str) -> Callable[..., Iterator[Any]]:
        # A list or object over its maxItems / maxProperties is refused for that alone:
        # its thousands of items are not each checked (seconds of CPU for one message).
        check = Draft202012Validator.VALIDATORS[keyword]

        def bounded(validator: Any, value: Any, instance: Any, sub: Any) -> Iterator[Any]:
            limit = sub.get("maxItems" if isinstance(instance, list) else "maxProperties")
            if isinstance(instance, list | dict) and limit is not None and len(instance) > limit:
                return
            yield from check(validator, value, instance, sub)

        return bounded

    return extend(Draft202012Validator, {
        "pattern": pattern,
        **{k: within_bounds(k) for k in ("items", "propertyNames", "additionalProperties")},
    })(schema())


# A refused job's reason lists at most this many of jsonschema's errors, each clause cut to
# MAX_CLAUSE_CHARS: a 64 KiB job can hold 16,000 bad items, whose every error (and the
# reason listing them, 2.5 MB) cost seconds of CPU. The first few say what to fix.
MAX_ERRORS = 20
MAX_CLAUSE_CHARS = 300
MAX_REASON_CHARS = MAX_ERRORS * (MAX_CLAUSE_CHARS + 2) + 20


def errors(doc: Any) -> list[Any]:
    """jsonschema's errors for `doc` (empty: valid)."""
    return list(_validator().iter_errors(doc))


def explain(doc: dict[str, Any], found: Iterable[Any] | None = None) -> str:
    """Why `doc` fails the schema, one clause per problem, each naming the field: the first
    MAX_ERRORS problems, then "and more" if there are. `found` (default: jsonschema's
    errors, produced lazily) is read no further than that."""
    source = iter(_validator().iter_errors(doc) if found is None else found)
    first = sorted(islice(source, MAX_ERRORS), key=_error_order)
    more = next(source, None) is not None
    # A fixed format's lengths follow from its pattern: report the pattern alone.
    patterned = {tuple(e.absolute_path) for e in first if e.validator == "pattern"}
    first = [e for e in first if not (e.validator in ("minLength", "maxLength")
                                      and tuple(e.absolute_path) in patterned
                                      and _is_format(e))]
    messages = list(dict.fromkeys(_clause(_describe(e, doc)) for e in first))
    reason = "; ".join(messages) or "the job does not match the schema"
    return reason + "; and more" if more else reason


def _clause(text: str) -> str:
    return text if len(text) <= MAX_CLAUSE_CHARS else text[:MAX_CLAUSE_CHARS - 3] + "..."


# -- checks the schema cannot express --------------------------------------------------------

def _check_twiml(text: str) -> None:
    from shared.twiml import check_document

    try:
        check_document(text)
    except ValueError as exc:
        raise JobRejected(f"field 'twiml': {exc}") from None


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _check_send_at_format(text: str) -> dt.datetime:
    try:
        return _instant(text)
    except ValueError:
        raise JobRejected(f"field 'send_at': {_short(text)} is not a date and time") from None


def check_schedule(job: Job, now: float) -> None:
    """`JobRejected` unless the job's `send_at` (if any) is in the window Twilio takes."""
    if job.send_at is not None:
        _check_window(job.send_at, _instant(job.send_at), now)


def _check_window(text: str, when: dt.datetime, now: float) -> None:
    ahead = when.timestamp() - now
    if not SEND_AT_MIN_SECONDS <= ahead <= SEND_AT_MAX_SECONDS:
        said = (f"{-ahead / 60:.0f} minute(s) ago" if ahead < 0 else
                f"{ahead / 60:.0f} minute(s) ahead" if ahead < 3600 * 24 else
                f"{ahead / 86400:.1f} days ahead")
        raise JobRejected(f"field 'send_at': {text} is {said}; Twilio schedules messages 15 "
                          "minutes to 35 days ahead")


def _too_large(size: int) -> JobRejected:
    return JobRejected(f"message is {size} characters; no job is larger than a queue message "
                       f"({MAX_MESSAGE_BYTES} bytes)")


# -- error messages ---------------------------------------------------------------------------

_ADDRESS_DEFS = frozenset({"e164", "whatsapp", "address"})
_FORMAT_FIELDS = frozenset({"messaging_service_sid", "content_sid", "send_at"})


def _is_format(error: Any) -> bool:
    return (_def_name(error.schema) in _ADDRESS_DEFS
            or (len(error.absolute_path) == 1 and error.absolute_path[0] in _FORMAT_FIELDS))


def _def_name(sub: Any) -> str | None:
    for name, definition in schema()["$defs"].items():
        if sub is definition or sub == definition:
            return str(name)
    return None


def _rule(error: Any) -> dict[str, Any] | None:
    """The `allOf` rule an error comes from, if any."""
    path = list(error.relative_schema_path)
    if len(path) >= 2 and path[0] == "allOf":
        return schema()["allOf"][path[1]]  # type: ignore[no-any-return]
    return None


def _error_order(error: Any) -> tuple[int, str]:
    return (len(error.absolute_path), "/".join(map(str, error.absolute_path)))


def _short(value: Any) -> str:
    text = printable(json.dumps(value, ensure_ascii=False))
    return text if len(text) <= 60 else text[:57] + "..."


def _required_names(sub: dict[str, Any]) -> list[str]:
    names = list(sub.get("required", []))
    for branch in sub.get("anyOf", []):
        names += branch.get("required", [])
    return names


def _describe(error: Any, doc: dict[str, Any]) -> str:
    path = list(error.absolute_path)
    field = path[0] if path else None
    where = "field '" + str(path[0]) + "".join(
        f"[{json.dumps(p)}]" for p in path[1:]) + "'" if path else "job"
    kind = error.validator
    rule = _rule(error)
    title = rule.get("title") if rule else None
    if kind == "additionalProperties":
        unknown = sorted(set(doc) - set(schema()["properties"]))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        # The nearest field a typo stands for, not all 30: a reason is cut at 300 characters
        # and the rest of it (what else is wrong) must still fit.
        guesses = [f"{u!r} (did you mean {near[0]!r}?)" if near else repr(u)
                   for u in unknown[:10]
                   for near in [difflib.get_close_matches(u, schema()["properties"], 1, 0.7)]]
        return (f"unknown field(s) {', '.join(guesses)}{more}; the fields are listed in "
                "the job schema (shared/schemas/outbound-job.v1.json)")
    if kind == "required" and rule is None:
        return f"missing required field '{error.message.split(chr(39))[1]}'"
    if kind == "required" and title == "requires":
        needed = error.message.split(chr(39))[1]
        present = [n for n in _required_names(rule["if"]) if n in doc]  # type: ignore[index]
        return f"'{needed}' is required with {', '.join(repr(p) for p in present)}"
    if error.schema is False and rule is not None:
        # jsonschema gives no path for a `false` property schema: find the fields instead.
        branch = rule["then"]["properties"]
        banned = ", ".join(repr(name) for name in doc if branch.get(name) is False)
        if title == "template":
            return (f"field(s) {banned} not allowed with 'content_sid' (the template holds "
                    "the text and media)")
        if title == "ignored with send_digits":
            return (f"field(s) {banned} not allowed with 'send_digits' (Twilio ignores "
                    "MachineDetection when SendDigits is given)")
        if title == "ignored without async_amd":
            return (f"field(s) {banned} not allowed without 'async_amd': true (Twilio posts "
                    "the result there only when it detects in the background)")
        article = "an" if doc.get("type") == "sms" else "a"
        return f"field(s) {banned} not allowed in {article} {doc.get('type')} job"
    if kind == "anyOf" and title == "sms":
        return "an sms job needs 'body' and/or 'media_url', or 'content_sid'"
    if kind == "oneOf" and title == "call":
        given = [k for k in ("say", "twiml", "url") if k in doc]
        return (f"a call job needs exactly one of 'say', 'twiml', 'url' (got "
                f"{', '.join(given) if given else 'none'})")
    if kind == "maxItems" and title == "whatsapp":
        return (f"{where}: WhatsApp takes one media URL per message, got "
                f"{len(error.instance)}")
    if kind == "pattern":
        return f"{where}: {_short(error.instance)} {_pattern_problem(error, doc)}"
    if kind == "const" and field == "version":
        return (f"field 'version': only version {SCHEMA_VERSION} is supported, "
                f"got {_short(error.instance)}")
    if kind == "enum":
        allowed = " or ".join(json.dumps(v) for v in error.validator_value)
        return f"{where}: must be {allowed}, got {_short(error.instance)}"
    if kind in ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "type",
                "minimum", "maximum"):
        limit = {"maxLength": "at most {} characters", "minLength": "at least {} character(s)",
                 "maxItems": "at most {} items", "minItems": "at least {} item(s)",
                 "maxProperties": "at most {} entries", "type": "of JSON type {}",
                 "minimum": "at least {}", "maximum": "at most {}",
                 }[kind].format(error.validator_value)
        if "propertyNames" in error.relative_schema_path:
            return f"{where}: variable name {_short(error.instance)} must be {limit}"
        if title == "variables":
            least = rule["if"]["properties"]["content_variables"]["minProperties"]  # type: ignore[index]
            return (f"{where}: must be {limit} with {least} or more variables (a job must "
                    "fit one queue message)")
        return f"{where}: must be {limit}"
    return f"{where}: {error.message!s}"


def _pattern_problem(error: Any, doc: dict[str, Any]) -> str:
    name = _def_name(error.schema)
    value = error.instance
    if name == "whatsapp":
        return ("is not a WhatsApp address like whatsapp:+15551234567 (a job to a whatsapp: "
                "recipient is sent on WhatsApp, from a WhatsApp sender)")
    if name in _ADDRESS_DEFS:
        if value.startswith("whatsapp:") and name == "e164":
            return ("is not an E.164 number like +15551234567 (whatsapp: addresses are for "
                    "sms jobs to a whatsapp: recipient)")
        if value.startswith("whatsapp:"):
            return "is not a WhatsApp address like whatsapp:+15551234567"
        return "is not an E.164 number like +15551234567"
    if name == "https_url":
        return "is not an https URL (printable ASCII: percent-encode anything else)"
    if "\\u0000" in error.validator_value:
        return ("has a control character or an unpaired surrogate (only tab, newline and "
                "carriage return are allowed)")
    if "propertyNames" in error.relative_schema_path:
        return "is not a variable name (letters, digits, _)"
    field = error.absolute_path[0] if error.absolute_path else "job"
    hints = {"messaging_service_sid": "is not a Messaging Service SID (MG + 32 hex digits)",
             "content_sid": "is not a Content template SID (HX + 32 hex digits)",
             "send_at": "is not ISO 8601 with an offset, like 2031-03-01T09:00:00+01:00",
             "send_digits": "has keys other than 0-9, A-D, #, *, w, W"}
    return hints.get(str(field), f"does not match {error.validator_value}")
