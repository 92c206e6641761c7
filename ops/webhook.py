r"""`python -m ops webhook` and `python -m ops sign`: play Twilio.

    python -m ops webhook /api/sms From=+15551234567 To=+15005550006 \
        MessageSid=SM0123456789abcdef0123456789abcdef Body=HOURS
    python -m ops webhook /api/voice From=+15551234567 To=+15005550006 \
        CallSid=CA0123456789abcdef0123456789abcdef
    python -m ops webhook --get "/api/twiml/message?Message=Hello"
    python -m ops sign http://127.0.0.1:7071/api/sms From=+15551234567 Body=hi
    python -m ops sign https://<app>.azurewebsites.net/api/sms From=+15551234567 Body=hi

`webhook` signs the request as Twilio would (X-Twilio-Signature over the URL and the form)
and sends it to WEBHOOK_BASE_URL (else http://127.0.0.1:7071, the local app), or to --base,
then prints the status and the answer; it exits 0 on 2xx. It signs exactly the URL it sends
to: when WEBHOOK_BASE_URL is set and --base (or a full URL) names another origin, it refuses,
since a request signed for one host and sent to another can be replayed against the first
(set WEBHOOK_BASE_URL to that origin for the command, or leave out --base). `sign` prints
only the signature of the URL it is given, for curl or a test. The auth token is
TWILIO_AUTH_TOKEN (environment, local.settings.json, or the local default); it is never
printed. The local default only signs for this machine: for any other host, set
TWILIO_AUTH_TOKEN to the account's auth token.
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from twilio.request_validator import RequestValidator

from ops.localsettings import LOCAL_AUTH_TOKEN, is_loopback, load_settings
from ops.target import OpsError
from shared.signature import FormParams

LOCAL_APP = "http://127.0.0.1:7071"


def add_parser(commands: Any) -> None:
    w = commands.add_parser("webhook", help="send a signed webhook request (play Twilio)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("path", help="/api/... (or a full URL)")
    w.add_argument("params", nargs="*", metavar="NAME=VALUE", help="form fields")
    w.add_argument("--get", action="store_true", help="a GET: the fields go in the query")
    w.add_argument("--base", help="where to send: default WEBHOOK_BASE_URL, else " + LOCAL_APP)
    w.set_defaults(run=run_webhook)
    s = commands.add_parser("sign", help="print the X-Twilio-Signature of a request",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("url", help="the full URL Twilio would request")
    s.add_argument("params", nargs="*", metavar="NAME=VALUE",
                   help="POST form fields (none: a GET)")
    s.set_defaults(run=run_sign)


def pairs_of(params: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise OpsError(f"form field {item!r} is not NAME=VALUE")
        out.append((name, value))
    return out


def signature(url: str, pairs: list[tuple[str, str]] | None, token: str) -> str:
    form = FormParams()
    for name, value in pairs or []:
        form.setdefault(name, []).append(value)
    return str(RequestValidator(token).compute_signature(url, form))


def _token(settings: dict[str, str], url: str) -> str:
    """The token to sign a request to `url` with."""
    token = settings.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise OpsError("TWILIO_AUTH_TOKEN is not set (environment or local.settings.json)")
    if token == LOCAL_AUTH_TOKEN and not is_loopback(url):
        # Signed with the local token, a deployment answers 403: say why before sending.
        raise OpsError(f"{urllib.parse.urlsplit(url).netloc or url} is not this machine and "
                       "TWILIO_AUTH_TOKEN is the local development one: set TWILIO_AUTH_TOKEN "
                       "to the Twilio account's auth token")
    return token


def run_sign(args: argparse.Namespace) -> int:
    pairs = pairs_of(args.params)
    print(signature(args.url, pairs or None, _token(load_settings(), args.url)))
    return 0


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# RFC 3986's reserved and unreserved characters, and `%` (an escape already written).
_URL_SAFE = ":/?#[]@!$&'()*+,;=-._~%"


def destination(path: str, base: str | None, public: str | None) -> str:
    """The URL to send to (and so to sign): `path` on `base`, else on WEBHOOK_BASE_URL
    (`public`), else on the local app. Refuses one whose origin is not `public`'s."""
    url = path if not path.startswith("/") else \
        (base or public or LOCAL_APP).rstrip("/") + path
    # Written as a browser (and so Twilio) would request it: a space or any other character
    # a URL cannot hold is percent-encoded; escapes already there are kept.
    url = urllib.parse.quote(url, safe=_URL_SAFE)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise OpsError(f"{path!r} is neither /api/... nor an http(s) URL")
    if public and origin(url) != origin(public):
        raise OpsError(
            f"{origin(url)} is not WEBHOOK_BASE_URL ({origin(public)}): the tool signs exactly "
            "the URL it sends to, and a request signed for one host and sent to another could "
            f"be replayed against the first. Leave out --base to send to {origin(public)}, or "
            f"run it with WEBHOOK_BASE_URL={origin(url)}")
    return url


class _Refuse(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: object, **__: object) -> None:
        return None  # the 3xx is answered to the caller as it is


_NO_REDIRECTS = urllib.request.build_opener(_Refuse)


def run_webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = destination(args.path, args.base, settings.get("WEBHOOK_BASE_URL"))
    token = _token(settings, url)
    pairs = pairs_of(args.params)
    data = None
    if args.get:
        if pairs:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(pairs)
        sig = signature(url, None, token)
    else:
        data = urllib.parse.urlencode(pairs).encode()
        sig = signature(url, pairs, token)
    req = urllib.request.Request(url, data=data, method="GET" if args.get else "POST",
                                 headers={"X-Twilio-Signature": sig,
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        # Redirects are not followed: the signature is for this URL only, and a redirect
        # (an auth front end, an http-to-https rule) would hand it to another origin.
        with _NO_REDIRECTS.open(req, timeout=15) as res:
            status, content_type, body = res.status, res.headers.get("Content-Type"), res.read()
    except urllib.error.HTTPError as exc:
        status, content_type, body = exc.code, exc.headers.get("Content-Type"), exc.read()
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlsplit(url).hostname or ""
        hint = "is scripts/run-local running?" if host in ("127.0.0.1", "localhost", "::1") \
            else "check the host name and that the app is deployed (curl .../api/health)"
        raise OpsError(f"nothing answered at {url} ({reason}); {hint}", 1) from None
    print(status, content_type or "")
    text = body.decode("utf-8", "replace")
    if text:
        print(text)
    return 0 if 200 <= status < 300 else 1
