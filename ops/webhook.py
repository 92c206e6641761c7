"""`python -m ops webhook` and `python -m ops sign`: play Twilio.

    python -m ops webhook /api/sms From=+15551234567 Body=hello
    python -m ops webhook --get "/api/twiml/message?Message=Hello"
    python -m ops sign https://func-x.azurewebsites.net/api/sms From=+15551234567 Body=hi

`webhook` signs the request as Twilio would (X-Twilio-Signature over the public URL and the
form) and sends it to WEBHOOK_BASE_URL (else http://127.0.0.1:7071, the local app), then
prints the status and the answer; it exits 0 on 2xx. `sign` prints only the signature, for
curl or a test. The auth token is TWILIO_AUTH_TOKEN (environment, local.settings.json, or the
local default); it is never printed. The local default only signs for this machine: for any
other host, set TWILIO_AUTH_TOKEN to the account's auth token.
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
from shared.signature import FormParams, public_url

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


def run_webhook(args: argparse.Namespace) -> int:
    settings = load_settings()
    base = (args.base or settings.get("WEBHOOK_BASE_URL") or LOCAL_APP).rstrip("/")
    url = base + args.path if args.path.startswith("/") else args.path
    token = _token(settings, url)
    pairs = pairs_of(args.params)
    signed_url = public_url(url, settings.get("WEBHOOK_BASE_URL"))
    data = None
    if args.get:
        if pairs:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(pairs)
            signed_url = public_url(url, settings.get("WEBHOOK_BASE_URL"))
        sig = signature(signed_url, None, token)
    else:
        data = urllib.parse.urlencode(pairs).encode()
        sig = signature(signed_url, pairs, token)
    req = urllib.request.Request(url, data=data, method="GET" if args.get else "POST",
                                 headers={"X-Twilio-Signature": sig,
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            status, content_type, body = res.status, res.headers.get("Content-Type"), res.read()
    except urllib.error.HTTPError as exc:
        status, content_type, body = exc.code, exc.headers.get("Content-Type"), exc.read()
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OpsError(f"nothing answered at {url} ({reason}); locally, is scripts/run-local "
                       "running?", 1) from None
    print(status, content_type or "")
    text = body.decode("utf-8", "replace")
    if text:
        print(text)
    return 0 if 200 <= status < 300 else 1
