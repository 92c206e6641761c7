"""TwiML documents, built with twilio's TwiML classes (they escape user text)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.parsers import expat

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

# Characters XML 1.0 forbids even when escaped; a form field may carry them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def check_document(text: str) -> None:
    """ValueError unless `text` is well-formed XML with a `<Response>` root and no DOCTYPE.

    TwiML never needs a DOCTYPE, and one brings entity declarations (entity expansion,
    external entities) into a document this app returns or hands to Twilio: refused before
    anything is expanded."""
    parser = expat.ParserCreate()
    root: list[str] = []

    def doctype(*_: object) -> None:
        raise ValueError("a DOCTYPE is not allowed in TwiML")

    def start(name: str, _attrs: object) -> None:
        if not root:
            root.append(name)

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = start
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise ValueError(f"not well-formed XML ({exc})") from None
    if root != ["Response"]:
        raise ValueError(f"the root element must be <Response>, not <{root[0]}>")


def clean(text: str) -> str:
    return _NOT_XML.sub("", text)


@dataclass(frozen=True)
class Speech:
    """How `<Say>` speaks: Twilio's `voice` and `language` attributes (None: Twilio's default)."""

    voice: str | None = None
    language: str | None = None

    def attributes(self) -> dict[str, str]:
        attrs = {}
        if self.voice:
            attrs["voice"] = clean(self.voice)
        if self.language:
            attrs["language"] = clean(self.language)
        return attrs


def is_audio_url(text: str) -> bool:
    return text.startswith(("https://", "http://"))


def say(text: str, speech: Speech = Speech()) -> str:
    response = VoiceResponse()
    response.say(clean(text), **speech.attributes())
    return str(response)


def say_or_play(items: Iterable[str], speech: Speech = Speech()) -> str:
    """The `message` twimlet: each item is played if it is a URL, else spoken."""
    response = VoiceResponse()
    for item in items:
        item = clean(item).strip()
        if not item:
            continue
        if is_audio_url(item):
            response.play(item)
        else:
            response.say(item, **speech.attributes())
    return str(response)


def message(text: str | None) -> str:
    """An SMS reply, or an empty `<Response/>` when there is nothing to say."""
    response = MessagingResponse()
    if text:
        response.message(clean(text))
    return str(response)


def empty() -> str:
    return str(VoiceResponse())
