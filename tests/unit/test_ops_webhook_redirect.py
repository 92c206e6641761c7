"""Low: `ops webhook` signs for WEBHOOK_BASE_URL and then hands the signature to whatever
origin that URL redirects to.

It refuses a `--base` other than WEBHOOK_BASE_URL, but sends with `urllib.request.urlopen`,
which follows redirects: a 301/302/303 to another origin is followed as a GET carrying every
header but the content ones, `X-Twilio-Signature` included (a `--get` request follows a 307
too, its signed query in the Location's request line if the target echoes it). Anything
between the operator and the app that redirects (an App Service auth login, an HTTP to
HTTPS rule, a front door, a hostile proxy) then receives a signature for the deployment's
URL. Send with redirects off (a 3xx is printed, not followed).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ops import webhook


class Collector(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        Collector.seen.append(dict(self.headers))
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *_: Any) -> None:
        pass


def redirecting_to(target: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    return Redirect


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    other = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    other_url = f"http://127.0.0.1:{other.server_address[1]}"
    app = ThreadingHTTPServer(("127.0.0.1", 0), redirecting_to(other_url))
    app_url = f"http://127.0.0.1:{app.server_address[1]}"
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (app, other)]
    for t in threads:
        t.start()
    yield app_url, other_url
    for s in (app, other):
        s.shutdown()
        s.server_close()


def test_the_signature_goes_only_to_the_origin_it_was_made_for(
        servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    app_url, _ = servers
    Collector.seen.clear()
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("WEBHOOK_BASE_URL", app_url)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "deploymentAuthToken0000000000000")
    args = argparse.Namespace(path="/api/sms", base=None, get=False,
                              params=["MessageSid=SM" + "1" * 32, "From=+15551234567",
                                      "To=+15005550006", "Body=hi"])
    webhook.run_webhook(args)
    leaked = [h for h in Collector.seen if "X-Twilio-Signature" in h]
    assert leaked == [], f"another origin received the signature: {leaked[0]['X-Twilio-Signature']}"
