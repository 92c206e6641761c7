"""The incoming call flow, configured without code: one JSON document (`CALL_FLOW`).

    {
      "greeting": "Thanks for calling Acme.",
      "blocklist": ["+15550001111"],
      "menu": {"message": "Press 1 for sales, 2 to leave a message.",
               "options": {"1": {"forward": "+15551230000"},
                           "2": {"voicemail": true},
                           "3": {"say": "We are open nine to five."}}},
      "forward": {"to": "+15551230000", "timeout": 20},
      "voicemail": {"message": "Please leave a message.", "notify": "+15551239999",
                    "transcribe": true},
      "voice": "Polly.Joanna", "language": "en-US"
    }

Every key is optional. A blocked caller gets `<Reject>`. Otherwise the greeting is spoken,
then the menu if there is one, else the forward (falling back to voicemail on no answer, if
configured), else voicemail. The flow is built from this app's own twimlets, so every step
is a signed request like any other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from shared.numbers import E164
from shared.twiml import Speech, clean
from shared.twimlets import same_number

_TOP = {"greeting", "blocklist", "menu", "forward", "voicemail", "voice", "language"}


class CallFlowError(ValueError):
    pass


@dataclass(frozen=True)
class CallFlow:
    doc: dict[str, Any]

    @classmethod
    def parse(cls, text: str) -> CallFlow:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CallFlowError(f"CALL_FLOW is not JSON ({exc.msg}).") from None
        if not isinstance(doc, dict):
            raise CallFlowError("CALL_FLOW must be a JSON object.")
        unknown = sorted(set(doc) - _TOP)
        if unknown:
            raise CallFlowError(f"CALL_FLOW has unknown key(s) {unknown}; allowed: "
                                f"{sorted(_TOP)}.")
        for number in doc.get("blocklist", []):
            _e164(number, "blocklist")
        if "forward" in doc:
            _e164(_obj(doc, "forward").get("to"), "forward.to")
            timeout = doc["forward"].get("timeout", 20)
            if not isinstance(timeout, int) or not 1 <= timeout <= 600:
                raise CallFlowError("CALL_FLOW forward.timeout must be 1 to 600 seconds.")
        if "voicemail" in doc:
            notify = _obj(doc, "voicemail").get("notify")
            if notify is not None:
                _e164(notify, "voicemail.notify")
        if "menu" in doc:
            options = _obj(doc, "menu").get("options")
            if not isinstance(options, dict) or not options:
                raise CallFlowError("CALL_FLOW menu.options must map digits to actions.")
            for digits, action in options.items():
                if not re.fullmatch(r"[0-9]{1,10}", digits) or not isinstance(action, dict) \
                        or len(action) != 1 \
                        or next(iter(action)) not in ("forward", "voicemail", "say"):
                    raise CallFlowError(
                        f"CALL_FLOW menu.options[{digits!r}] must be digits -> one of "
                        '{"forward": "+1..."}, {"voicemail": true}, {"say": "text"}.')
                if "forward" in action:
                    _e164(action["forward"], f"menu.options[{digits}].forward")
                if "voicemail" in action and action["voicemail"] is not True:
                    raise CallFlowError(f"CALL_FLOW menu.options[{digits}].voicemail must be "
                                        "true.")
        return cls(doc)

    @property
    def speech(self) -> Speech:
        return Speech(self.doc.get("voice"), self.doc.get("language"))

    def blocked(self, caller: str | None) -> bool:
        # Matched by digits, as the twimlets match allowed callers and moderators.
        return any(same_number(caller, number) for number in self.doc.get("blocklist", []))

    def render(self, caller: str | None, greeting: str, links: Any) -> str:
        """The TwiML for an incoming call. `links.twimlet(name, params)` makes URLs."""
        response = VoiceResponse()
        if self.blocked(caller):
            response.reject()
            return str(response)
        response.say(clean(self.doc.get("greeting") or greeting), **self.speech.attributes())
        speech = [(k, v) for k, v in (("Voice", self.doc.get("voice")),
                                      ("Language", self.doc.get("language"))) if v]
        voicemail = self._voicemail_url(links, speech) if "voicemail" in self.doc else None
        if "menu" in self.doc:
            menu = self.doc["menu"]
            params = [("Message", menu.get("message", ""))] + speech
            for digits, action in sorted(menu["options"].items()):
                params.append((f"Options[{digits}]", self._action_url(action, links, speech,
                                                                       voicemail)))
            response.redirect(links.twimlet("menu", params))
        elif "forward" in self.doc:
            response.redirect(self._forward_url(self.doc["forward"]["to"], links, voicemail))
        elif voicemail:
            response.redirect(voicemail)
        return str(response)

    def _forward_url(self, number: str, links: Any, fail_url: str | None) -> str:
        forward = self.doc.get("forward", {})
        params = [("PhoneNumber", number), ("Timeout", str(forward.get("timeout", 20)))]
        if fail_url:
            params.append(("FailUrl", fail_url))
        return str(links.twimlet("forward", params))

    def _voicemail_url(self, links: Any, speech: list[tuple[str, str]]) -> str:
        vm = self.doc.get("voicemail") or {}
        # The voicemail twimlet transcribes unless told otherwise; the flow only when asked.
        params = [(k, v) for k, v in (("Message", vm.get("message")),
                                      ("Notify", vm.get("notify")),
                                      ("Transcribe", "true" if vm.get("transcribe") else "false"))
                  if v] + speech
        return str(links.twimlet("voicemail", params))

    def _action_url(self, action: dict[str, Any], links: Any, speech: list[tuple[str, str]],
                    voicemail: str | None) -> str:
        if "forward" in action:
            return self._forward_url(action["forward"], links, voicemail)
        if "voicemail" in action:
            return voicemail or self._voicemail_url(links, speech)
        return str(links.twimlet("message", [("Message", action["say"])] + speech))


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc[key]
    if not isinstance(value, dict):
        raise CallFlowError(f"CALL_FLOW {key} must be an object.")
    return value


def _e164(value: Any, where: str) -> None:
    if not isinstance(value, str) or not E164.match(value):
        raise CallFlowError(f"CALL_FLOW {where} must be an E.164 number like +15551234567; "
                            f"got {value!r}.")
