"""X-Twilio-Signature checking with twilio's own `RequestValidator`.

Twilio signs the exact URL it requested. On Azure, TLS ends in front of the worker, which
may see `http://` and an internal host, so the URL is rebuilt from the public origin
(`WEBHOOK_BASE_URL`) plus the path and query exactly as received (a `code=` key included).
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlparse, urlsplit

from twilio.request_validator import (
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)


class FormParams(dict[str, list[str]]):
    """Form fields with repeated keys, in the shape `RequestValidator` reads (`getall`)."""

    def getall(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str, default: str | None = None) -> str | None:
        values = self.get(name)
        return values[0] if values else default


def public_url(request_url: str, webhook_base_url: str | None) -> str:
    """The URL Twilio requested: the public origin + the path and query as received."""
    if not webhook_base_url:
        return request_url
    parts = urlsplit(request_url)
    url = webhook_base_url + (parts.path or "/")
    return f"{url}?{parts.query}" if parts.query else url


# The algorithms twilio's RequestValidator implements. Anything else named in the
# X-Twilio-Webhooks-Signature-Settings header is refused here, before the validator would
# log the caller's text.
ALGORITHMS = frozenset({"HMAC_SHA1", "HMAC_SHA256"})


# A signature is the base64 of the HMAC digest: 20 bytes (SHA1) or 32 (SHA256), padded.
_SHAPES = {"HMAC_SHA1": re.compile(r"[A-Za-z0-9+/]{27}="),
           "HMAC_SHA256": re.compile(r"[A-Za-z0-9+/]{43}=")}


def well_shaped(signature: str, algorithm: str) -> bool:
    """Whether `signature` could be one `algorithm` makes: checked before a body is parsed,
    so a request signed with anything else costs nothing more."""
    shape = _SHAPES.get(algorithm)
    return bool(shape and shape.fullmatch(signature))


def algorithm(settings_header: str | None) -> str | None:
    """The algorithm the settings header names (HMAC_SHA1 when none), or None if unknown."""
    name = get_signature_algorithm(settings_header).upper()
    return name if name in ALGORITHMS else None


def is_valid(*, url: str, auth_token: str, signature: str | None,
             form: Mapping[str, Sequence[str]] | None = None, body: str | None = None,
             algorithm: str = "HMAC_SHA1") -> bool:
    """True if `signature` is Twilio's for this request.

    `form` is the POST form (GET and JSON requests: None); `body` is a JSON body, checked
    through the `bodySHA256` query parameter Twilio adds to such requests.
    """
    if not signature or not auth_token or not signature.isascii() or not well_formed(url):
        return False  # a signature is base64 (ASCII); Twilio requested a well-formed URL
    if body is not None and "bodySHA256" not in parse_qs(urlsplit(url).query):
        return False  # a JSON body Twilio signs always carries its hash in the URL
    validator = _validator(auth_token)
    if body is None:
        params = FormParams({k: list(v) for k, v in (form or {}).items()})
        # Twilio signs the URL it requested: try that first, then what `validate` would
        # also accept (the URL with and without its port) but not the same URL twice: a
        # forged request costs two signatures, not three.
        def signed(candidate: str) -> bool:
            return hmac.compare_digest(
                validator.compute_signature(candidate, params, algorithm).encode(),
                signature.encode())

        if signed(url):
            return True
        parsed = urlparse(url)
        return any(signed(other) for other in dict.fromkeys(
            [remove_port(parsed), add_port(parsed)]) if other != url)
    return bool(validator.validate(url, body, signature, algorithm))


def well_formed(url: str) -> bool:
    """Whether `url` parses, port included. `RequestValidator.validate` reads the port (it
    tries the URL with and without it) and raises ValueError on a Host header like
    `host:abc`, `host:99999` or `[::1`; a URL Twilio requested never has one."""
    try:
        urlsplit(url).port  # noqa: B018 - read for the ValueError it raises
        url.encode("utf-8")  # a lone surrogate cannot be signed
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4)
def _validator(auth_token: str) -> RequestValidator:
    return RequestValidator(auth_token)
