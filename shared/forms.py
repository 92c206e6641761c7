"""`application/x-www-form-urlencoded` text (a webhook's body, a URL's query), parsed in
time that grows with its length only.

An unsigned request's body is parsed before its signature can be checked (Twilio signs the
decoded fields), so the parse must stay cheap whatever the text: `urllib.parse.parse_qsl`
decodes each `%` in Python (a 64 KiB body of `%2%2...` cost 7 ms of CPU, of `%41%41...`
3.3 ms). Here a malformed escape is refused by one regex scan, and escapes are decoded in C.
The result is `parse_qsl(text, keep_blank_values=True, errors="strict")`'s for every form
Twilio sends.
"""

from __future__ import annotations

import binascii
import re

from shared.signature import FormParams

# Fields in one form: 4x the most Twilio sends (an incoming WhatsApp message from an ad,
# with 10 media: 64). Each costs the parse and every signature tried about 2 µs.
MAX_FIELDS = 256
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class MalformedForm(ValueError):
    """Not a form Twilio would send; the message says why."""


def parse(text: str, *, max_fields: int = MAX_FIELDS, lenient: bool = False) -> FormParams:
    """Fields in the order written, repeated names kept; blanks kept as "". `lenient`: a `%`
    without two hex digits is kept as it is, as parse_qsl and PHP read it (a query string a
    person wrote, such as a twimlet URL's `Message=Save 50%`); else it is refused (a form
    Twilio encoded never has one)."""
    if text.count("&") >= max_fields:
        raise MalformedForm(f"more than {max_fields} fields")
    if _BAD_ESCAPE.search(text):
        if not lenient:
            raise MalformedForm("a % not followed by two hex digits")
        text = _BAD_ESCAPE.sub("%25", text)  # in C, whatever the text
    params = FormParams()
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            params.setdefault(_unquote(name), []).append(_unquote(value))
    return params


def _unquote(text: str) -> str:
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    # Quoted-printable decodes `=XX` in C: a literal `=` becomes its own escape first, then
    # each (checked) `%XX` becomes `=XX`, so every `=` is followed by two hex digits.
    escaped = text.replace("=", "=3D").replace("%", "=")
    try:
        return binascii.a2b_qp(escaped.encode("utf-8")).decode("utf-8")
    except UnicodeError:  # escapes of bytes that are not UTF-8; a lone surrogate
        raise MalformedForm("text that is not UTF-8") from None
