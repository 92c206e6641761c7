"""Outbound jobs: the queue message contract (schema version 1).

The schema is published in `shared/schemas/outbound-job.v1.json`; this module decodes a
queue message (plain or base64 text), validates it and turns it into a `Job`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent / "schemas" / "outbound-job.v1.json"
SCHEMA_VERSION = 1
MAX_TWIML_CHARS = 4000  # Twilio's limit for inline `Twiml` on a call


class JobRejected(ValueError):
    """The message is not a job we can send. The message says why, naming the field."""


@dataclass(frozen=True)
class Job:
    type: str
    to: str
    id: str | None = None
    from_: str | None = None
    status_callback: str | None = None
    body: str | None = None
    media_url: tuple[str, ...] = ()
    say: str | None = None
    twiml: str | None = None
    url: str | None = None
    voice: str | None = None
    language: str | None = None


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


def parse(raw: bytes | str) -> Job:
    text = decode_text(raw)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobRejected(f"message is not JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})") from None
    return from_dict(doc)


def from_dict(doc: Any) -> Job:
    if not isinstance(doc, dict):
        raise JobRejected(f"a job must be a JSON object, not {type(doc).__name__}")
    validator = _validator()
    # is_valid is the fast path; the errors are collected only for a job that fails.
    if not validator.is_valid(doc):
        errors = sorted(validator.iter_errors(doc), key=_error_order)
        messages = list(dict.fromkeys(_describe(e, doc) for e in errors))
        raise JobRejected("; ".join(messages))
    if "twiml" in doc:
        _check_twiml(doc["twiml"])
    return Job(
        type=doc["type"], to=doc["to"], id=doc.get("id"), from_=doc.get("from"),
        status_callback=doc.get("status_callback"), body=doc.get("body"),
        media_url=tuple(doc.get("media_url", ())), say=doc.get("say"),
        twiml=doc.get("twiml"), url=doc.get("url"), voice=doc.get("voice"),
        language=doc.get("language"),
    )


def to_dict(job: Job) -> dict[str, Any]:
    """The job as a schema-valid JSON object (the inverse of `from_dict`)."""
    doc: dict[str, Any] = {"type": job.type, "to": job.to}
    for key, value in (("id", job.id), ("from", job.from_),
                       ("status_callback", job.status_callback), ("body", job.body),
                       ("media_url", list(job.media_url) or None), ("say", job.say),
                       ("twiml", job.twiml), ("url", job.url), ("voice", job.voice),
                       ("language", job.language)):
        if value is not None:
            doc[key] = value
    return doc


def valid_id(text: str) -> bool:
    """Whether `text` is a job id as the schema's `id` defines it."""
    return _id_pattern().fullmatch(text) is not None


@cache
def _id_pattern() -> re.Pattern[str]:
    return re.compile(schema()["properties"]["id"]["pattern"])


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def _validator() -> Any:
    # jsonschema is slow to import; only the queue path needs it.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _check_twiml(text: str) -> None:
    from shared.twiml import check_document

    try:
        check_document(text)
    except ValueError as exc:
        raise JobRejected(f"field 'twiml': {exc}") from None


def _error_order(error: Any) -> tuple[int, str]:
    return (len(error.absolute_path), "/".join(map(str, error.absolute_path)))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: Any, doc: dict[str, Any]) -> str:
    path = list(error.absolute_path)
    field = path[0] if path else None
    where = "field '" + "".join(
        f"[{p}]" if isinstance(p, int) else p for p in path) + "'" if path else "job"
    kind = error.validator
    if kind == "additionalProperties":
        unknown = sorted(set(doc) - set(schema()["properties"]))
        return (f"unknown field(s) {', '.join(repr(u) for u in unknown)}; allowed: "
                + ", ".join(schema()["properties"]))
    if kind == "required":
        return f"missing required field '{error.message.split(chr(39))[1]}'"
    if kind == "dependentRequired":
        return str(error.message).replace("is a dependency of", "is required with")
    if error.schema is False:
        # jsonschema gives no path for a `false` property schema: find the fields instead.
        branch = schema()["allOf"][error.relative_schema_path[1]]["then"]["properties"]
        banned = [name for name in doc if branch.get(name) is False]
        article = "an" if doc.get("type") == "sms" else "a"
        return (f"field(s) {', '.join(repr(b) for b in banned)} not allowed in {article} "
                f"{doc.get('type')} job")
    if kind == "anyOf" and not path:
        return "an sms job needs 'body' and/or 'media_url'"
    if kind == "oneOf" and not path:
        given = [k for k in ("say", "twiml", "url") if k in doc]
        return (f"a call job needs exactly one of 'say', 'twiml', 'url' (got "
                f"{', '.join(given) if given else 'none'})")
    if kind == "pattern":
        ref = {"to": "e164", "from": "e164"}.get(str(field))
        if ref:
            return f"{where}: {_short(error.instance)} is not an E.164 number like +15551234567"
        if field in ("status_callback", "url", "media_url"):
            return f"{where}: {_short(error.instance)} is not an https URL"
        return f"{where}: {_short(error.instance)} does not match {error.schema['pattern']}"
    if kind == "const" and field == "version":
        return (f"field 'version': only version {SCHEMA_VERSION} is supported, "
                f"got {_short(error.instance)}")
    if kind == "enum" and field == "type":
        return f"field 'type': must be \"sms\" or \"call\", got {_short(error.instance)}"
    if kind in ("maxLength", "minLength", "maxItems", "minItems", "type"):
        limit = {"maxLength": "at most {} characters", "minLength": "at least {} character(s)",
                 "maxItems": "at most {} items", "minItems": "at least {} item(s)",
                 "type": "of JSON type {}"}[kind].format(error.validator_value)
        return f"{where}: must be {limit}"
    return f"{where}: {error.message!s}"
