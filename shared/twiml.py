"""TwiML documents, built with twilio's TwiML classes (they escape user text)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree import ElementTree

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

# Characters XML 1.0 forbids even when escaped; a form field may carry them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def check_document(text: str) -> None:
    """ValueError unless `text` is well-formed XML with a `<Response>` root."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML ({exc})") from None
    if root.tag != "Response":
        raise ValueError(f"the root element must be <Response>, not <{root.tag}>")


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
