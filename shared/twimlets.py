"""Self-hosted drop-ins for Twilio's twimlets, taking the twimlets' own parameter names.

Each stage answers what the original twimlet answered (Twilio's MIT-licensed PHP, and
twimlets.com's later behaviour as twilio-labs/function-templates records it); the
differences are deliberate and listed in docs/twimlets.md. Each function takes `Params` (the
settings from the signed URL's query, Twilio's runtime fields from the form) and a `Links`
that builds absolute URLs back to this app, keeping the signed origin and `?code=`, and
returns TwiML plus any outbound jobs to enqueue (voicemail and conference notifications).
Multi-stage twimlets carry their state in the query of their action URLs, as the
originals do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from shared import redaction
from shared.numbers import E164
from shared.signature import FormParams
from shared.twiml import Speech, check_document, clean

log = redaction.logger(__name__)  # phone numbers masked

_INDEXED = re.compile(r"^(?P<name>[A-Za-z]+)\[(?P<index>[0-9]{0,6})\]$")
_OPTION_KEY = re.compile(r"^[0-9*#]{1,10}$")
_SMALL_NUMBER = re.compile(r"[0-9]{1,4}")
_SID = re.compile(r"[A-Za-z0-9]{2,64}")
_RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# A phone number as Twilio takes it: E.164, or a US/Canada number in national form with a
# valid area code and exchange (NANP: neither starts with 0 or 1, so `0000000000` is not
# one: Twilio would refuse it with 21211); spaces, dots, dashes and parentheses are only how
# people write them.
_PHONE_MARKS = re.compile(r"[\s().-]")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}|1?[2-9][0-9]{2}[2-9][0-9]{6}")
_NOT_DIGIT = re.compile(r"[^0-9]")
# A caller Twilio writes as a number: E.164 (API 2010) or digits (the 2008 API's Caller).
# A Voice SDK client (`client:...`) or a SIP caller (`sip:...@host`) is never one.
_CALLER_NUMBER = re.compile(r"\+?[0-9]{7,15}")

# Every list a twimlet reads is capped, so one request's work, answer and side effects are
# bounded. Numbers (PhoneNumbers, AllowedCallers, Moderators): 10, Twilio's limit of
# <Number>s in one <Dial>. Other lists (Message, Options, Music): 20, room for a full
# keypad menu (0-9, * and #) and a few multi-digit codes.
MAX_DIAL_NUMBERS = 10
MAX_LIST_ITEMS = 20
_NUMBERS_UNIT = f"numbers (Twilio dials at most {MAX_DIAL_NUMBERS} in one <Dial>)"
# A notification SMS must be a valid outbound job (a body of at most 1600 characters): what
# it quotes from the request is cut to this length. A caller is a phone number, a client
# or a SIP name (a TwiML App's client sets its own, of any length).
MAX_CALLER_CHARS = 64
MAX_SMS_CHARS = 1600
# Where Twilio keeps a recording: the voicemail SMS links it, built from the SIDs.
TWILIO_RECORDINGS = "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{}"
MAX_PASSWORD_TRIES = 3  # wrong conference pass codes per call before hanging up
GENRES = frozenset({"classical", "ambient", "electronica", "guitars", "rock", "soft-rock"})
TWILIO_HOLDMUSIC = "https://twimlets.com/holdmusic"  # Twilio's own, its default wait music

# What the originals say, word for word.
VOICEMAIL_PROMPT = "Please leave a message after the beep."
VOICEMAIL_THANKS = "Thanks. Good bye."
RESTRICTED = "Sorry, you are calling from a restricted number. Good bye."
MENU_ERROR = "I'm sorry, that wasn't a valid option."
PASS_CODE = "Please enter your conference pass code"
CONFERENCE_WELCOME = "You are now entering the conference line."
MODERATOR_SMS = "{} has entered your conference.  Call the number this text came from to join."
APP_CALLER = "an app or SIP caller"  # how a notification names a caller that is no number
# Ours: the originals let a caller guess for ever.
PASS_CODE_REFUSED = "Sorry, that pass code is not correct. Good bye."

# The fields Twilio posts to a voice URL, a <Gather>/<Dial>/<Record> action, a
# transcription callback or a conference wait URL (Twilio's voice request docs; `Caller`,
# `Called` and `DialStatus` are API 2008-08-01 names the originals still read). Only
# these are read from a POST form, and next-stage URLs never carry them: everything else
# is a setting, and settings come only from the signed URL's query.
# Stage markers the voicemail twimlet writes into its <Record> action and transcription
# callback URLs (the query Twilio signs), as forward marks its <Dial> action with Dial=true.
RECORDED = "Recorded"
TRANSCRIBED = "Transcribed"
RUNTIME_FIELDS = frozenset({
    "AccountSid", "ApiVersion", "ApplicationSid", "CallSid", "CallStatus", "CallToken",
    "Called", "Caller", "CallerName", "Direction", "ForwardedFrom", "From", "To",
    "ParentCallSid", "StirVerstat", "StirPassportToken",
    "FromCity", "FromState", "FromZip", "FromCountry", "ToCity", "ToState", "ToZip",
    "ToCountry", "CallerCity", "CallerState", "CallerZip", "CallerCountry", "CalledCity",
    "CalledState", "CalledZip", "CalledCountry",
    "Digits", "FinishedOnKey", "SpeechResult", "Confidence", "msg",
    "DialCallStatus", "DialCallSid", "DialCallDuration", "DialBridged", "DialStatus",
    "DialSipResponseCode",
    "RecordingUrl", "RecordingSid", "RecordingDuration", "RecordingStatus",
    "TranscriptionText", "TranscriptionStatus", "TranscriptionUrl", "TranscriptionSid",
    "TranscriptionType", "url",
    "ConferenceSid", "FriendlyName", "QueueSid", "QueuePosition", "QueueTime",
    "AvgQueueTime", "CurrentQueueSize", "MaxQueueSize",
})


class TwimletError(ValueError):
    """A parameter the twimlet cannot work with; the message names it (a 400)."""


@dataclass(frozen=True)
class Result:
    twiml: str
    jobs: list[dict[str, Any]] = field(default_factory=list)


# -- phone numbers ----------------------------------------------------------------------------

def phone_key(number: str | None) -> str:
    """The originals' comparison key: the digits, without a leading US/Canada `1`, so
    `+1 (415) 555-0122`, `14155550122` and `4155550122` are one number."""
    digits = _NOT_DIGIT.sub("", number or "")
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def canonical(number: str | None) -> str:
    """A number as E.164, for matching: written with `+`, as written; else a US/Canada
    number (10 digits, or 11 with the leading 1) gets its +1. So `(415) 555-0122`,
    `14155550122` and `+1 415 555 0122` are one number, and `+4795550122` (Norway) is not
    `+14795550122`, as comparing bare digits without a leading 1 made them."""
    compact = _PHONE_MARKS.sub("", number or "")
    digits = _NOT_DIGIT.sub("", compact)
    if not digits:
        return ""
    if compact.startswith("+"):
        return "+" + digits
    if len(digits) == 10:
        return "+1" + digits
    return "+" + digits


def same_number(a: str | None, b: str | None) -> bool:
    key = canonical(a)
    return bool(key) and key == canonical(b)


def e164(number: str) -> str:
    """A number `check_phone` accepted, in the E.164 form the outbound jobs need."""
    compact = _PHONE_MARKS.sub("", number)
    if compact.startswith("+"):
        return compact
    return "+" + compact if len(compact) == 11 else "+1" + compact


def check_phone(name: str, value: str, *, plus_lost: bool = False) -> str:
    """`value` if it is a phone number, else a 400 naming `name`. `plus_lost`: the value
    began with a space, as a `+` written as is in a URL's query reads: say so."""
    if not _PHONE.fullmatch(_PHONE_MARKS.sub("", value)):
        shown = value if len(value) <= 40 else value[:37] + "..."
        hint = (" A + in a URL's query reads as a space: write it %2B (+44... as %2B44...)."
                if plus_lost else "")
        raise TwimletError(f"{name} must be a phone number: E.164 like +14155550122, or a "
                           f"US/Canada number like (415) 555-0122; got {shown!r}.{hint}")
    return value


def _is_phone(value: str | None) -> bool:
    return bool(value) and bool(_PHONE.fullmatch(_PHONE_MARKS.sub("", value or "")))


# -- parameters and links ---------------------------------------------------------------------

def _list_name(key: str) -> str:
    m = _INDEXED.match(key)
    return m["name"] if m else key


class Links:
    """Absolute URLs back to this app: same origin, `code=` kept, stage in the query."""

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url  # parsed on first use: most answers need no link

    @cached_property
    def _parts(self) -> tuple[str, str, list[tuple[str, str]]]:
        parts = urlsplit(self.public_url)
        return (f"{parts.scheme}://{parts.netloc}", parts.path,
                parse_qsl(parts.query, keep_blank_values=True))

    @property
    def origin(self) -> str:
        return self._parts[0]

    @property
    def path(self) -> str:
        return self._parts[1]

    @property
    def query(self) -> list[tuple[str, str]]:
        return self._parts[2]

    @property
    def prefix(self) -> str:
        path = self.path
        return path.split("/twiml/")[0] if "/twiml/" in path else path.rsplit("/", 1)[0]

    def here(self, *, drop: Iterable[str] = (), add: Sequence[tuple[str, str]] = (),
             **changes: str | None) -> str:
        """This URL for the next stage: query parameters changed (None removes one), lists
        in `drop` removed whatever their index, `add` appended. Twilio's own fields (a GET
        request carries them in the query) are left out: the next request brings its own."""
        dropped = set(drop)
        pairs = [(k, v) for k, v in self.query
                 if k not in changes and k != "code" and k not in RUNTIME_FIELDS
                 and _list_name(k) not in dropped]
        pairs += list(add) + [(k, v) for k, v in changes.items() if v is not None]
        return self._url(self.path, pairs + self._code)

    @property
    def _code(self) -> list[tuple[str, str]]:
        """The function key, if the request carried one: kept last on every link."""
        return [(k, v) for k, v in self.query if k == "code"]

    def twimlet(self, name: str, params: list[tuple[str, str]]) -> str:
        """Another twimlet of this app (the whisper, the call flow's steps)."""
        return self._url(f"{self.prefix}/twiml/{name}", params + self._code)

    def _url(self, path: str, pairs: list[tuple[str, str]]) -> str:
        return f"{self.origin}{path}" + (f"?{urlencode(pairs)}" if pairs else "")


@dataclass(frozen=True)
class Params:
    """Twimlet parameters: `Name`, `Name[0]`, `Name[]` ... and the speech settings."""

    values: FormParams
    account_sid: str | None = None  # the account whose auth token signed the request

    @classmethod
    def from_request(cls, query: FormParams, form: FormParams, *,
                     account_sid: str | None) -> Params:
        """Settings come only from the signed URL's query; from the POST form only the
        fields Twilio itself sends at run time (they win over the query: they are this
        request's). A TwiML App reached from the Voice SDK receives the client's own
        parameters in the form, signed with our token: they must not add numbers to dial,
        change a FailUrl or name a moderator."""
        values = FormParams({k: list(v) for k, v in query.items()})
        for name, items in form.items():
            if name in RUNTIME_FIELDS:
                values[name] = list(items)
        return cls(values, account_sid)

    def has(self, name: str) -> bool:
        return name in self.values

    def query_flag(self, name: str) -> bool:
        """A stage marker the app wrote into its own next-stage URL: from the signed query
        only (a marker is never a runtime field, so the form cannot supply it)."""
        return name not in RUNTIME_FIELDS and (self.get(name) or "").lower() == "true"

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.first(name)
        # Every value may end up in TwiML: drop what XML cannot hold.
        return clean(value) if value not in (None, "") else default

    def items(self, name: str, *, bracketed_only: bool = False, as_written: bool = False,
              limit: int = MAX_LIST_ITEMS, unit: str = "values"
              ) -> list[tuple[str, str]]:
        """(key, value) of `Name`, then `Name[0]`, `Name[1]` ... in index order, then
        `Name[]` as sent (`as_written`: the bracketed ones in the order the URL has them);
        blanks left out, as the originals' array_filter did. More than `limit` is a 400."""
        plain = [] if bracketed_only else [(name, v) for v in self.values.get(name, [])]
        numbered: list[tuple[int, str, str]] = []
        appended: list[tuple[str, str]] = []
        written: list[tuple[str, str]] = []
        for key, values in self.values.items():
            m = _INDEXED.match(key)
            if m and m["name"] == name:
                written.extend((key, v) for v in values)
                if m["index"]:
                    numbered.extend((int(m["index"]), key, v) for v in values)
                else:
                    appended.extend((key, v) for v in values)
        ordered = plain + (written if as_written else
                           [(k, v) for _, k, v in sorted(numbered, key=lambda t: t[0])]
                           + appended)
        found = [(k, clean(v).strip()) for k, v in ordered if clean(v).strip()]
        if len(found) > limit:
            raise TwimletError(f"{name}: at most {limit} {unit}; got {len(found)}.")
        return found

    def indexed(self, name: str) -> list[str]:
        return [v for _, v in self.items(name)]

    def phone(self, name: str) -> str | None:
        value = self.get(name)
        if not value or not value.strip():
            return None
        return check_phone(name, value.strip(), plus_lost=value.startswith(" "))

    def phones(self, name: str, *, bracketed_only: bool = False) -> list[str]:
        items = self.items(name, bracketed_only=bracketed_only, limit=MAX_DIAL_NUMBERS,
                           unit=_NUMBERS_UNIT)
        raw = {v.strip(): v for vs in self.values.values() for v in vs}
        return [check_phone(key, value, plus_lost=raw.get(value, "").startswith(" "))
                for key, value in items]

    def options(self, name: str) -> dict[str, str]:
        """`Options[1]=url`, `Options[22]=url`: keyed by the digits between the brackets.
        `Options[]=url` takes the next number, as a PHP array did: 0 first, else one more
        than the largest number written before it."""
        prefix = f"{name}["
        found: dict[str, str] = {}
        numbers: list[int] = []
        for key, values in self.values.items():
            if not (key.startswith(prefix) and key.endswith("]")) or not values:
                continue
            digits = key[len(prefix):-1]
            if digits and not _OPTION_KEY.match(digits):
                raise TwimletError(f"{key}: a menu option is keyed by the digits a caller "
                                   "presses (0-9, * or #, up to 10).")
            for value in values[:1] if digits else values:
                slot = digits or str(max(numbers, default=-1) + 1)
                if slot.isdigit() and str(int(slot)) == slot:
                    numbers.append(int(slot))
                if clean(value).strip():
                    found[slot] = clean(value).strip()
        if len(found) > MAX_LIST_ITEMS:
            raise TwimletError(f"{name}: at most {MAX_LIST_ITEMS} menu options; got "
                               f"{len(found)}.")
        return found

    @property
    def speech(self) -> Speech:
        return Speech(self.get("Voice"), self.get("Language"))

    def timeout(self, default: int) -> int:
        """`Timeout` in seconds; empty or 0 means the default, as in the originals."""
        raw = (self.get("Timeout") or "").strip()
        if raw and not _SMALL_NUMBER.fullmatch(raw):
            raise TwimletError("Timeout must be a whole number of seconds.")
        return int(raw) if raw and int(raw) else default

    def small_number(self, name: str) -> int:
        raw = self.get(name, "0") or "0"
        if not _SMALL_NUMBER.fullmatch(raw):
            raise TwimletError(f"{name} must be a whole number (the twimlet sets it itself).")
        return int(raw)

    @property
    def caller(self) -> str | None:
        return self.get("From") or self.get("Caller")

    @property
    def caller_number(self) -> str | None:
        """The caller, only when it is a phone number: a Voice SDK client
        (`client:14155550122`) or a SIP caller (`sip:+14155550122@host`) names itself, so
        its digits must not match an allowed caller or a moderator."""
        caller = self.caller
        return caller if _CALLER_NUMBER.fullmatch(_PHONE_MARKS.sub("", caller or "")) else None

    @property
    def called(self) -> str | None:
        """The number called; only a phone caller's: a Voice SDK or SIP caller sets `To`
        itself, so it must not unlock an allowed-caller list or a moderator seat."""
        return (self.get("To") or self.get("Called")) if self.caller_number else None

    def listed(self, numbers: Sequence[str]) -> bool:
        """Whether this call is from (or, from a phone, to) one of `numbers`: how
        AllowedCallers[] and Moderators[] match, as E.164 numbers (`canonical`)."""
        caller, called = self.caller_number, self.called
        return any(same_number(caller, n) or same_number(called, n) for n in numbers)


# -- shared stages ---------------------------------------------------------------------------

def _is_url(text: str) -> bool:
    """The originals' test: anything starting with `http`, in any case, is played."""
    return text.lower().startswith("http")


def _speak(node: Any, text: str | None, speech: Speech, default: str | None = None) -> None:
    """Play `text` if it is a URL, else say it, else say `default` (if any)."""
    text = (text or "").strip()
    if text and _is_url(text):
        node.play(text)
    elif text or default:
        node.say(text or default, **speech.attributes())


def _doc(*verbs: Callable[[VoiceResponse], Any]) -> str:
    response = VoiceResponse()
    for verb in verbs:
        verb(response)
    return str(response)


def _hangup() -> str:
    return _doc(lambda r: r.hangup())


def _redirect(url: str) -> str:
    # The originals answered an HTTP 302 to the URL; Twilio documents <Redirect>, and its
    # own successors to the twimlets (the funlets) answer this way.
    return _doc(lambda r: r.redirect(url))


def _dial_answered(p: Params) -> bool:
    # DialStatus: the 2008 API's name, which the originals still read.
    return (p.get("DialCallStatus") in ("completed", "answered")
            or p.get("DialStatus") == "answered")


def _after_dial(p: Params) -> Result:
    """forward/simulring, back from the <Dial>: connected (or no FailUrl): hang up; else
    go to the FailUrl."""
    fail_url = p.get("FailUrl")
    if _dial_answered(p) or not fail_url:
        return Result(_hangup())
    return Result(_redirect(fail_url))


def _back_from_dial(p: Params) -> bool:
    return p.has("Dial") and bool(p.get("DialCallStatus") or p.get("DialStatus"))


# -- the twimlets ----------------------------------------------------------------------------

def echo(p: Params, links: Links) -> Result:
    text = p.get("Twiml")
    if not text:
        raise TwimletError("Twiml is required: a TwiML document to return.")
    try:
        check_document(text)
    except ValueError as exc:
        raise TwimletError(f"Twiml: {exc}.") from None
    return Result(text)


def message(p: Params, links: Links) -> Result:
    response = VoiceResponse()
    speech = p.speech
    for item in p.indexed("Message"):
        _speak(response, item, speech)
    return Result(str(response))


def forward(p: Params, links: Links) -> Result:
    if _back_from_dial(p):
        return _after_dial(p)
    number = p.phone("PhoneNumber")
    if not number:
        raise TwimletError("PhoneNumber is required: the number to forward the call to.")
    # As on twimlets.com, only the bracketed form is a list: a plain AllowedCallers= is not.
    allowed = p.phones("AllowedCallers", bracketed_only=True)
    if allowed and not p.listed(allowed):
        return Result(_doc(lambda r: r.say(RESTRICTED, **p.speech.attributes())))
    attrs: dict[str, Any] = {"action": links.here(Dial="true"), "timeout": p.timeout(20)}
    if p.get("CallerId"):
        attrs["caller_id"] = p.get("CallerId")
    return Result(_doc(lambda r: r.dial(number, **attrs)))


def voicemail(p: Params, links: Links) -> Result:
    notify = p.phone("Notify")
    if p.get("Email") and not notify and not p.get("RecordingUrl"):
        # A URL moved from twimlets.com: say once per call why nobody will be told.
        log.warning("voicemail: Email is not supported here (no mail service); add "
                    "Notify=<phone number> to the URL for an SMS per message")
    # Transcribed unless Transcribe is given and is not "true", as in the original.
    transcribe = (p.get("Transcribe") or "true").lower() == "true"
    # The stage is read from the signed query the app wrote into its own <Record> URLs,
    # never from the form alone: a Voice SDK client puts what it likes in the form
    # (RecordingUrl, TranscriptionText ...), and would text the owner its own words.
    status = (p.get("TranscriptionStatus") or "").lower()
    if p.query_flag(TRANSCRIBED) and status in ("completed", "failed"):
        # Twilio's transcription callback: notify (with the text if there is one).
        text = p.get("TranscriptionText") if status == "completed" else None
        return Result(_doc(), _voicemail_jobs(p, notify, text))
    if p.query_flag(RECORDED) and p.get("RecordingUrl"):
        jobs = [] if transcribe else _voicemail_jobs(p, notify, None)
        return Result(_doc(lambda r: r.say(VOICEMAIL_THANKS, **p.speech.attributes()),
                           lambda r: r.hangup()), jobs)
    response = VoiceResponse()
    _speak(response, p.get("Message"), p.speech, VOICEMAIL_PROMPT)
    # The original's <Record/> posted back to this URL by default: said here explicitly,
    # with the stage in the query.
    record: dict[str, Any] = {"action": links.here(Recorded="true")}
    if transcribe:
        record.update(transcribe=True, transcribe_callback=links.here(Transcribed="true"))
    response.record(**record)
    return Result(str(response))


def _voicemail_jobs(p: Params, notify: str | None, transcript: str | None
                    ) -> list[dict[str, Any]]:
    if not notify or not p.get("RecordingUrl"):
        return []
    sid = p.get("RecordingSid") or ""
    body = f"New voicemail from {_display(p.caller)}: {_recording_link(p, sid)}.mp3"
    if transcript:
        body = (body + f"\n{transcript}")[:MAX_SMS_CHARS]
    # The job id makes the notification exactly-once, whatever Twilio retries.
    return [{"id": f"voicemail-{sid}", "type": "sms", "to": e164(notify), "body": body}]


def _recording_link(p: Params, sid: str) -> str:
    """The link the owner's phone gets, built as Twilio builds its RecordingUrl, from this
    account's SID and the recording's. Never the RecordingUrl text: a browser reads a URL
    differently from Python (`https://evil.example\\@api.twilio.com/...` opens
    evil.example), and a TwiML App's client can send any RecordingUrl."""
    if not _RECORDING_SID.fullmatch(sid):
        raise TwimletError("RecordingSid must be the recording's SID (RE and 32 hex "
                           "digits), as Twilio sends it with RecordingUrl.")
    account = p.get("AccountSid")
    if not account or account != p.account_sid:
        raise TwimletError("AccountSid must be this app's Twilio account, as Twilio sends "
                           "it: the recording link is built from it.")
    return TWILIO_RECORDINGS.format(account, sid)


def _display(number: str | None) -> str:
    """A caller's number as the original's e-mail showed it: (415) 555-0122. A caller that
    is not a phone number (a Voice SDK or SIP identity, chosen by the caller's own client) is
    not quoted: it would put the caller's words in the owner's SMS."""
    key = phone_key(number)
    if len(key) == 10 and _is_phone(number):
        return f"({key[:3]}) {key[3:6]}-{key[6:]}"
    if _app_caller(number):
        return APP_CALLER
    return _quoted(number, "an unknown number")


def _app_caller(caller: str | None) -> bool:
    """A caller that is not a phone number: a Voice SDK or SIP identity, which the caller's
    own client chooses, so its text is never put in an owner's SMS."""
    return bool(caller and caller.strip()) and not _is_phone(caller)


def _quoted(text: str | None, default: str) -> str:
    """A caller as a notification quotes it: stripped, at most MAX_CALLER_CHARS."""
    text = (text or "").strip() or default
    return text if len(text) <= MAX_CALLER_CHARS else text[:MAX_CALLER_CHARS - 3] + "..."


def menu(p: Params, links: Links) -> Result:
    options = p.options("Options")
    if not options:
        raise TwimletError("Options[<digits>]=<url> is required: at least one menu option.")
    response = VoiceResponse()
    digits = p.get("Digits")
    if digits:
        if digits in options:
            return Result(_redirect(options[digits]))
        _speak(response, p.get("ErrorMessage"), p.speech, MENU_ERROR)
    gather = Gather(action=links.here(), num_digits=max(len(k) for k in options))
    _speak(gather, p.get("Message"), p.speech)
    response.append(gather)
    response.redirect(links.here())  # nothing pressed: ask again
    return Result(str(response))


def whisper(p: Params, links: Links) -> Result:
    """Played to the person called before the call is connected."""
    if p.has("Digits"):
        # A key was pressed: an empty answer connects the call.
        return Result(_doc() if p.get("Digits") else _hangup())
    gather = Gather(action=links.here(), num_digits=1)
    # The default spells out the caller's number, one character at a time.
    spelled = "".join(c if c.isspace() else f"{c}. " for c in p.caller or "")
    _speak(gather, p.get("Message"), p.speech,
           f"You are receiving a call from {spelled}.  Press any key to accept.")
    response = VoiceResponse()
    response.append(gather)
    if p.has("HumanCheck"):
        response.hangup()  # no key pressed: not taken by a person (voicemail), hang up
    return Result(str(response))


def _whisper_url(p: Params, links: Links, human_check: bool) -> str:
    params = [(k, v) for k in ("Message", "Voice", "Language") if (v := p.get(k))]
    return links.twimlet("whisper", params + ([("HumanCheck", "1")] if human_check else []))


def simulring(p: Params, links: Links) -> Result:
    if _back_from_dial(p):
        return _after_dial(p)
    numbers = p.phones("PhoneNumbers")
    if not numbers:
        raise TwimletError("PhoneNumbers[] is required: the numbers to ring at once.")
    dial = Dial(action=links.here(Dial="true"), timeout=p.timeout(20))
    url = _whisper_url(p, links, human_check=False)  # connects after the whisper
    for number in numbers:
        dial.number(number, url=url)
    return Result(_doc(lambda r: r.append(dial)))


def findme(p: Params, links: Links) -> Result:
    numbers = p.phones("PhoneNumbers")
    if not p.has("Dial") and not numbers:
        raise TwimletError("PhoneNumbers[] is required: the numbers to try in order.")
    if p.has("Dial") and _dial_answered(p):
        return Result(_hangup())
    if not numbers:  # every number tried
        fail_url = p.get("FailUrl")
        return Result(_redirect(fail_url) if fail_url else _hangup())
    # The numbers not yet tried travel in the action URL, as in the original.
    action = links.here(Dial="true", drop=["PhoneNumbers"],
                        add=[("PhoneNumbers[]", n) for n in numbers[1:]])
    dial = Dial(action=action, timeout=p.timeout(60))
    dial.number(numbers[0], url=_whisper_url(p, links, human_check=True))
    return Result(_doc(lambda r: r.append(dial)))


def conference(p: Params, links: Links) -> Result:
    password = p.get("Password")
    digits = p.get("Digits")
    if password and digits != password:
        return Result(_ask_pass_code(p, links, password, digits))
    # As on twimlets.com, only the bracketed form is a list: a plain Moderators= is not.
    moderators = p.phones("Moderators", bracketed_only=True)
    is_moderator = p.listed(moderators)
    jobs: list[dict[str, Any]] = []
    if moderators and not is_moderator and p.get("EnableSmsNotifications", "0") != "0":
        jobs = _moderator_jobs(p, moderators)
    response = VoiceResponse()
    _speak(response, p.get("Message"), p.speech, CONFERENCE_WELCOME)
    attrs: dict[str, Any] = {}
    music = p.get("Music") or ""
    if music in GENRES:
        attrs.update(wait_url=f"{TWILIO_HOLDMUSIC}?Bucket=com.twilio.music.{music}",
                     wait_method="GET")
    elif _is_url(music):
        attrs.update(wait_url=music, wait_method="GET")
    if moderators:
        attrs["start_conference_on_enter"] = "true" if is_moderator else "false"
    dial = Dial()
    dial.conference(p.get("Name") or _room(p), **attrs)
    response.append(dial)
    return Result(str(response), jobs)


def _room(p: Params) -> str:
    """No Name: the original's room, one per configuration (its Message and Moderators,
    the moderators in the order the URL has them, as the original hashed them)."""
    moderators = [v for _, v in p.items("Moderators", bracketed_only=True, as_written=True,
                                        limit=MAX_DIAL_NUMBERS, unit=_NUMBERS_UNIT)]
    seed = (p.get("Message") or "") + "".join(phone_key(m) for m in moderators)
    return hashlib.md5(seed.encode(), usedforsecurity=False).hexdigest()


def _ask_pass_code(p: Params, links: Links, password: str, digits: str | None) -> str:
    tries = p.small_number("PasswordTries") + (1 if digits else 0)
    if tries >= MAX_PASSWORD_TRIES:
        return _doc(lambda r: r.say(PASS_CODE_REFUSED, **p.speech.attributes()),
                    lambda r: r.hangup())
    here = links.here(PasswordTries=str(tries) if tries else None)
    gather = Gather(action=here, num_digits=max(3, len(password)))
    gather.say(PASS_CODE, **p.speech.attributes())
    return _doc(lambda r: r.append(gather), lambda r: r.redirect(here))


def _moderator_jobs(p: Params, moderators: list[str]) -> list[dict[str, Any]]:
    call_sid = p.get("CallSid") or ""
    if not _SID.fullmatch(call_sid):
        raise TwimletError("CallSid is not a Twilio SID.")
    caller = p.get("Caller") or p.caller
    body = MODERATOR_SMS.format(APP_CALLER[0].upper() + APP_CALLER[1:] if _app_caller(caller) else
                                _quoted(caller, "A caller"))
    line = p.called  # "the number this text came from": the conference line
    jobs = []
    # Each moderator's job id is the call's SID and the moderator's place in the list: ids
    # show in log lines, numbers must not.
    for n, moderator in enumerate(dict.fromkeys(e164(m) for m in moderators), start=1):
        job = {"id": f"conference-{call_sid}-{n}", "type": "sms", "to": moderator,
               "body": body}
        if line and E164.match(line):
            job["from"] = line
        jobs.append(job)
    return jobs


def holdmusic(p: Params, links: Links) -> Result:
    tracks = p.items("Music")
    for key, track in tracks:
        if not _is_url(track):
            raise TwimletError(f"{key} must be a URL of an audio file; got {track[:40]!r}.")
    bucket = (p.get("Bucket") or "").strip()
    if not tracks and bucket:
        if not _BUCKET.fullmatch(bucket):
            raise TwimletError("Bucket must be an S3 bucket name, e.g. com.twilio.music.rock.")
        # Twilio's own hold-music twimlet lists the bucket (it serves Twilio's wait music).
        params = [("Bucket", bucket)] + [(k, v) for k in ("Message",) if (v := p.get(k))]
        return Result(_doc(lambda r: r.redirect(f"{TWILIO_HOLDMUSIC}?{urlencode(params)}",
                                                method="GET")))
    if not tracks:
        raise TwimletError("Music (or Music[0], Music[1] ...) is required: URLs to play; or "
                           "Bucket, an S3 bucket of Twilio's hold music.")
    response = VoiceResponse()
    for _, track in tracks:
        response.play(track)
        _speak(response, p.get("Message"), p.speech)  # between tracks, as the original
    response.redirect(links.here())  # and loop
    return Result(str(response))


# Twimlets whose answer depends on the signed URL alone (no caller, digits or call state):
# the webhook renders each distinct URL once.
URL_ONLY = frozenset({"echo", "message", "holdmusic"})

Twimlet = Callable[[Params, Links], Result]
TWIMLETS: dict[str, Twimlet] = {
    "echo": echo, "message": message, "forward": forward, "voicemail": voicemail,
    "menu": menu, "whisper": whisper, "simulring": simulring, "findme": findme,
    "conference": conference, "holdmusic": holdmusic,
}
