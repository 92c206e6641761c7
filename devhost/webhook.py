"""`python -m devhost.webhook`: play Twilio: sign a webhook request and send it.

    python -m devhost.webhook /api/sms From=+15551234567 Body=hello
    python -m devhost.webhook --get "/api/twiml/message?Message=Hello"

The signature uses TWILIO_AUTH_TOKEN (environment or local.settings.json); the URL that is
signed is WEBHOOK_BASE_URL + path when that is set, else the URL requested.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.parse
import urllib.request

from twilio.request_validator import RequestValidator

from devhost.host import load_settings
from shared.signature import FormParams, public_url


def sign(url: str, form: FormParams | None, token: str) -> str:
    return RequestValidator(token).compute_signature(url, form or {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devhost.webhook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="/api/... (or a full URL)")
    p.add_argument("params", nargs="*", help="form fields, name=value")
    p.add_argument("--get", action="store_true", help="send a GET (params go in the query)")
    p.add_argument("--base", default="http://127.0.0.1:7071")
    args = p.parse_args(argv)
    settings = load_settings()
    token = settings.get("TWILIO_AUTH_TOKEN")
    if not token:
        p.error("TWILIO_AUTH_TOKEN is not set (environment or local.settings.json)")
    url = args.base + args.path if args.path.startswith("/") else args.path
    pairs = [tuple(p.split("=", 1)) for p in args.params]
    form = FormParams()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    data = None
    if args.get:
        if pairs:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(pairs)
        signature = sign(public_url(url, settings.get("WEBHOOK_BASE_URL")), None, token)
    else:
        data = urllib.parse.urlencode(pairs).encode()
        signature = sign(public_url(url, settings.get("WEBHOOK_BASE_URL")), form, token)
    req = urllib.request.Request(url, data=data, method="GET" if args.get else "POST",
                                 headers={"X-Twilio-Signature": signature,
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            print(res.status, res.headers.get("Content-Type"))
            print(res.read().decode())
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.headers.get("Content-Type"))
        print(exc.read().decode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
