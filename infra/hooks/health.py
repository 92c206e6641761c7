"""Wait until the deployed app answers GET /api/health (a cold Flex instance takes seconds; the
first start after a deploy, or with roles still propagating, can take minutes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from infra.hooks.wait import Clock, Say, until

BUDGET_SECONDS = 300.0
EVERY_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 15.0


def health_probe(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_SECONDS) as res:  # noqa: S310
            body = json.loads(res.read() or b"{}")
            return None if body.get("status") == "ok" else f"it answered {body!r}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as exc:
        return f"no answer ({getattr(exc, 'reason', None) or type(exc).__name__})"


def wait_for_app(base_url: str, *, say: Say, clock: Clock | None = None,
                 budget_s: float = BUDGET_SECONDS, every_s: float = EVERY_SECONDS) -> bool:
    url = f"{base_url.rstrip('/')}/api/health"
    reason = until(lambda: health_probe(url), what=url, budget_s=budget_s, every_s=every_s,
                   say=say, clock=clock)
    if reason is None:
        say(f"The app answers: {url}")
        return True
    say(f"{url} still does not answer after {budget_s / 60:.0f} minutes ({reason}). Look at "
        "the app's log stream (Azure portal: the function app > Log stream) or Application "
        "Insights > Failures; docs/deploy.md, \"When it fails\", lists the usual causes.")
    return False
