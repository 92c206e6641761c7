"""Self-hosted drop-ins for Twilio's twimlets, taking the twimlets' own parameter names.

Each function takes the request's parameters (query, then form; the query wins) and a
`Links` that builds absolute URLs back to this app, keeping the signed origin and `?code=`,
and returns TwiML plus any outbound jobs to enqueue (the voicemail notification).
Multi-stage twimlets carry their state in the query of their action URLs, as the
originals do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from shared.signature import FormParams
from shared.twiml import Speech, check_document, clean, is_audio_url

_INDEXED = re.compile(r"^(?P<name>[A-Za-z]+)\[(?P<index>[0-9]{0,6})\]$")
_DIGITS = re.compile(r"^[0-9*#]{1,10}$")
_SMALL_NUMBER = re.compile(r"[0-9]{1,3}")
ANSWERED = frozenset({"completed", "answered"})
DEFAULT_TIMEOUT = 20
VOICEMAIL_PROMPT = "Please leave a message after the beep."
MENU_ERROR = "I'm sorry, that wasn't a valid option."
WHISPER = "You are receiving a call. Press any key to accept."


# The fields Twilio posts to a voice URL, an action or a callback (Twilio's "Voice request"
# docs). Only these are read from a POST form; everything else comes from the query.
RUNTIME_FIELDS = frozenset({
    "AccountSid", "ApiVersion", "CallSid", "CallStatus", "Called", "Caller", "Direction",
    "ForwardedFrom", "From", "To", "ParentCallSid", "CallToken",
    "Digits", "FinishedOnKey", "SpeechResult", "Confidence",
    "DialCallStatus", "DialCallSid", "DialCallDuration", "DialBridged",
    "RecordingUrl", "RecordingSid", "RecordingDuration", "RecordingStatus",
    "TranscriptionText", "TranscriptionStatus", "TranscriptionUrl", "TranscriptionSid",
})


class TwimletError(ValueError):
    """A parameter the twimlet cannot work with; the message names it (a 400)."""


@dataclass(frozen=True)
class Result:
    twiml: str
    jobs: list[dict[str, Any]] = field(default_factory=list)


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

    def here(self, **changes: str | None) -> str:
        """This URL with query parameters changed (None removes one)."""
        pairs = [(k, v) for k, v in self.query if k not in changes and k != "code"]
        pairs += [(k, v) for k, v in changes.items() if v is not None]
        return self._url(self.path, pairs + self._code)

    @property
    def _code(self) -> list[tuple[str, str]]:
        """The function key, if the request carried one: kept last on every link."""
        return [(k, v) for k, v in self.query if k == "code"]

    def twimlet(self, name: str, params: list[tuple[str, str]]) -> str:
        """Another twimlet of this app, e.g. for the call flow."""
        return self._url(f"{self.prefix}/twiml/{name}", params + self._code)

    def _url(self, path: str, pairs: list[tuple[str, str]]) -> str:
        return f"{self.origin}{path}" + (f"?{urlencode(pairs)}" if pairs else "")


@dataclass(frozen=True)
class Params:
    """Twimlet parameters: `Name`, `Name[0]`, `Name[]` ... and the speech settings."""

    values: FormParams

    @classmethod
    def from_request(cls, query: FormParams, form: FormParams) -> Params:
        """Settings come only from the signed URL's query; from the POST form only the
        fields Twilio itself sends at run time. A TwiML App reached from the Voice SDK
        receives the client's own parameters in the form, signed with our token: they
        must not add numbers to dial, change a FailUrl or name a moderator."""
        values = FormParams({k: list(v) for k, v in query.items()})
        for name, items in form.items():
            if name in RUNTIME_FIELDS and name not in values:
                values[name] = list(items)
        return cls(values)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.first(name)
        # Every value may end up in TwiML: drop what XML cannot hold.
        return clean(value) if value not in (None, "") else default

    def indexed(self, name: str) -> list[str]:
        """`Name`, then `Name[0]`, `Name[1]` ... in index order, then `Name[]` as sent."""
        plain = list(self.values.get(name, []))
        numbered: list[tuple[int, str]] = []
        appended: list[str] = []
        for key, items in self.values.items():
            m = _INDEXED.match(key)
            if m and m["name"] == name:
                if m["index"]:
                    numbered.extend((int(m["index"]), v) for v in items)
                else:
                    appended.extend(items)
        ordered = plain + [v for _, v in sorted(numbered, key=lambda pair: pair[0])] + appended
        cleaned = (clean(v) for v in ordered)
        return [v for v in cleaned if v.strip()]

    def options(self, name: str) -> dict[str, str]:
        """`Options[1]=url`, `Options[22]=url`: keyed by the text between the brackets."""
        prefix = f"{name}["
        return {k[len(prefix):-1]: clean(v[0]) for k, v in self.values.items()
                if k.startswith(prefix) and k.endswith("]") and _DIGITS.match(k[len(prefix):-1])
                and v and clean(v[0])}

    @property
    def speech(self) -> Speech:
        return Speech(self.get("Voice"), self.get("Language"))

    def timeout(self) -> int:
        raw = self.get("Timeout", str(DEFAULT_TIMEOUT)) or ""
        if not _SMALL_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= 600:
            raise TwimletError("Timeout must be a whole number of seconds from 1 to 600.")
        return int(raw)

    def flag(self, name: str) -> bool:
        return (self.get(name) or "").lower() in ("true", "1", "yes")


def _speak(node: Any, text: str | None, speech: Speech) -> None:
    """Play `text` if it is a URL, else say it (the twimlets' rule for `Message`).
    `text` comes from `Params`, already cleaned."""
    if not text:
        return
    text = text.strip()
    if is_audio_url(text):
        node.play(text)
    elif text:
        node.say(text, **speech.attributes())


def _after_dial(p: Params, links: Links) -> VoiceResponse:
    """The second stage of forward/simulring: connected, or the FailUrl."""
    response = VoiceResponse()
    if p.get("DialCallStatus") in ANSWERED:
        response.hangup()
    elif p.get("FailUrl"):
        response.redirect(p.get("FailUrl"))
    else:
        response.hangup()
    return response


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
    if p.get("Dial"):
        return Result(str(_after_dial(p, links)))
    number = p.get("PhoneNumber")
    if not number:
        raise TwimletError("PhoneNumber is required: the number to forward the call to.")
    allowed = p.indexed("AllowedCallers")
    response = VoiceResponse()
    if allowed and p.get("From") not in allowed:
        response.reject()
        return Result(str(response))
    dial = Dial(action=links.here(Dial="true"), timeout=p.timeout(),
                caller_id=p.get("CallerId") or p.get("From"))
    dial.number(number)
    response.append(dial)
    return Result(str(response))


def voicemail(p: Params, links: Links) -> Result:
    response = VoiceResponse()
    transcribe = p.flag("Transcribe")
    notify = p.get("Notify")
    if p.get("Stage") == "transcribed":
        # Twilio's transcription callback: notify with the text, nothing to say.
        jobs = _voicemail_jobs(p, notify, p.get("TranscriptionText"))
        return Result(str(response), jobs)
    if p.get("RecordingUrl"):
        jobs = [] if transcribe else _voicemail_jobs(p, notify, None)
        response.say("Thank you. Goodbye.", **p.speech.attributes())
        response.hangup()
        return Result(str(response), jobs)
    _speak(response, p.get("Message", VOICEMAIL_PROMPT), p.speech)
    record: dict[str, Any] = {"action": links.here(Stage="recorded"), "max_length": 120}
    if transcribe:
        record.update(transcribe=True, transcribe_callback=links.here(Stage="transcribed"))
    response.record(**record)
    response.say("I did not receive a recording. Goodbye.", **p.speech.attributes())
    return Result(str(response))


def _voicemail_jobs(p: Params, notify: str | None, transcript: str | None
                    ) -> list[dict[str, Any]]:
    recording = p.get("RecordingUrl")
    if not notify or not recording:
        return []
    body = f"New voicemail from {p.get('From') or 'unknown'}: {recording}"
    if transcript:
        body += f"\n{transcript}"
    sid = p.get("RecordingSid") or recording.rsplit("/", 1)[-1]
    # The job id makes the notification exactly-once, whatever Twilio retries.
    return [{"id": f"voicemail-{sid}"[:128], "type": "sms", "to": notify,
             "body": body[:1600]}]


def menu(p: Params, links: Links) -> Result:
    options = p.options("Options")
    if not options:
        raise TwimletError("Options[<digits>]=<url> is required: at least one menu option.")
    response = VoiceResponse()
    digits = p.get("Digits")
    if digits is not None:
        if digits in options:
            response.redirect(options[digits])
            return Result(str(response))
        _speak(response, p.get("ErrorMessage", MENU_ERROR), p.speech)
    gather = Gather(action=links.here(Digits=None),
                    num_digits=max(len(k) for k in options), timeout=10)
    _speak(gather, p.get("Message"), p.speech)
    response.append(gather)
    response.redirect(links.here(Digits=None))
    return Result(str(response))


def _whisper(p: Params, links: Links) -> Result:
    """Played to the person called: press a key to take the call, else it goes on."""
    response = VoiceResponse()
    if p.get("Accepted"):
        return Result(str(response))  # an empty answer connects the call
    gather = Gather(action=links.here(Accepted="true"), num_digits=1, timeout=5)
    _speak(gather, p.get("Message", WHISPER), p.speech)
    response.append(gather)
    response.hangup()
    return Result(str(response))


def simulring(p: Params, links: Links) -> Result:
    if p.get("Whisper"):
        return _whisper(p, links)
    if p.get("Dial"):
        return Result(str(_after_dial(p, links)))
    numbers = p.indexed("PhoneNumbers")
    if not numbers:
        raise TwimletError("PhoneNumbers[] is required: the numbers to ring at once.")
    response = VoiceResponse()
    dial = Dial(action=links.here(Dial="true"), timeout=p.timeout())
    for number in numbers:
        dial.number(number, url=links.here(Whisper="true"))
    response.append(dial)
    return Result(str(response))


def findme(p: Params, links: Links) -> Result:
    if p.get("Whisper"):
        return _whisper(p, links)
    numbers = p.indexed("PhoneNumbers")
    if not numbers:
        raise TwimletError("PhoneNumbers[] is required: the numbers to try in order.")
    index = 0
    if p.get("Dial"):
        if p.get("DialCallStatus") in ANSWERED:
            answered = VoiceResponse()
            answered.hangup()
            return Result(str(answered))
        raw = p.get("Index", "0") or "0"
        if not _SMALL_NUMBER.fullmatch(raw):
            raise TwimletError("Index must be a whole number (findme sets it itself).")
        index = int(raw) + 1
    response = VoiceResponse()
    if index >= len(numbers):
        if p.get("FailUrl"):
            response.redirect(p.get("FailUrl"))
        else:
            response.hangup()
        return Result(str(response))
    dial = Dial(action=links.here(Dial="true", Index=str(index)), timeout=p.timeout())
    dial.number(numbers[index], url=links.here(Whisper="true", Dial=None, Index=None))
    response.append(dial)
    return Result(str(response))


def conference(p: Params, links: Links) -> Result:
    name = p.get("Name", "default") or "default"
    password = p.get("Password")
    response = VoiceResponse()
    if password and p.get("Digits") != password:
        if p.get("Digits") is not None:
            response.say("Sorry, that password is incorrect.", **p.speech.attributes())
        gather = Gather(action=links.here(Digits=None), num_digits=len(password), timeout=10)
        gather.say("Please enter the conference password, then press pound.",
                   **p.speech.attributes())
        response.append(gather)
        response.redirect(links.here(Digits=None))
        return Result(str(response))
    _speak(response, p.get("Message"), p.speech)
    moderators = p.indexed("Moderators")
    is_moderator = p.get("From") in moderators
    attrs: dict[str, Any] = {
        "start_conference_on_enter": not moderators or is_moderator,
        "end_conference_on_exit": is_moderator,
    }
    music = p.get("Music")
    if music and is_audio_url(music):
        attrs["wait_url"] = music
    dial = Dial()
    dial.conference(clean(name), **attrs)
    response.append(dial)
    return Result(str(response))


def holdmusic(p: Params, links: Links) -> Result:
    tracks = [t for t in p.indexed("Music") if is_audio_url(t)]
    if not tracks:
        raise TwimletError("Music (or Music[0], Music[1] ...) is required: https URLs to play.")
    response = VoiceResponse()
    _speak(response, p.get("Message"), p.speech)
    for track in tracks:
        response.play(track)
    response.redirect(links.here(Message=None), method="POST")  # loop the music
    return Result(str(response))


TWIMLETS: dict[str, Callable[[Params, Links], Result]] = {
    "echo": echo, "message": message, "forward": forward, "voicemail": voicemail,
    "menu": menu, "simulring": simulring, "findme": findme, "conference": conference,
    "holdmusic": holdmusic,
}
