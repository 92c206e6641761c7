"""The settings of a local run: the process environment, then `local.settings.json`, then
the local defaults below (which demonstrate every feature the README and docs/ show).

Light on purpose (no SDK imports): `scripts/run-local`, the dev host and the `ops` tools
all read settings through here. It lives in `ops` because the tools are used against
deployments too and must not depend on the local host (`devhost` imports it, not the other
way round); nothing here is deployed (.funcignore).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# Where local.settings.json is read from; `LOCAL_SETTINGS_FILE` names another file (tests
# point it at a missing one to run on the defaults alone).
SETTINGS_FILE_VARIABLE = "LOCAL_SETTINGS_FILE"

# The call flow of docs/webhooks.md (section "Incoming call flow without code"), so a local call
# answers with a greeting and a menu.
LOCAL_CALL_FLOW = {
    "greeting": "Thanks for calling Acme.",
    "blocklist": ["+15550001111"],
    "menu": {"message": "Press 1 for sales, 2 for our hours, 3 to leave a message.",
             "options": {"1": {"forward": "+15551230000"},
                         "2": {"say": "We are open nine to five."},
                         "3": {"voicemail": True}}},
    "forward": {"to": "+15551230000", "timeout": 20},
    "voicemail": {"message": "Please leave a message.", "notify": "+15551239999",
                  "transcribe": True},
    "voice": "Polly.Joanna", "language": "en-US"}

# Local defaults: Azurite on its usual ports, the local Twilio API double on 4010, test
# credentials that only the double accepts (it checks the SID's shape, not its value), and
# the keyword replies and call flow of docs/webhooks.md.
DEV_DEFAULTS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",  # `func start` needs it
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "TWILIO_API_BASE_URL": "http://127.0.0.1:4010",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "localDevAuthToken000000000000000",
    "TWILIO_FROM_NUMBER": "+15005550006",
    "OUTBOUND_QUEUE_NAME": "twilio-outbound",
    "SMS_KEYWORDS": json.dumps({"HOURS": "We are open 9 to 5.", "ADDRESS": "1 Main St"}),
    "CALL_FLOW": json.dumps(LOCAL_CALL_FLOW),
}


# Public, so no deployment accepts it: the tools sign with it only for this machine.
LOCAL_AUTH_TOKEN = DEV_DEFAULTS["TWILIO_AUTH_TOKEN"]


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connection_fields(conn: str) -> dict[str, str]:
    """A storage connection string's `Name=value` fields."""
    return dict(p.split("=", 1) for p in conn.split(";") if "=" in p)


def is_development_storage(conn: str) -> bool:
    """`UseDevelopmentStorage=true`: Azurite on 10000-10002."""
    return "usedevelopmentstorage=true" in conn.replace(" ", "").lower()


def is_local_storage(conn: str) -> bool:
    """A connection string for storage on this machine (Azurite)."""
    return is_development_storage(conn) or is_loopback(
        connection_fields(conn).get("QueueEndpoint", ""))


def settings_file(env: Mapping[str, str] | None = None, root: Path = ROOT) -> Path:
    env = os.environ if env is None else env
    named = env.get(SETTINGS_FILE_VARIABLE)
    return Path(named) if named else root / "local.settings.json"


def file_values(path: Path) -> dict[str, str]:
    """A local.settings.json's `Values` (none when the file is missing)."""
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text())["Values"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a local.settings.json with a \"Values\" object "
                         f"({type(exc).__name__}: {exc})") from None
    return {k: "" if v is None else str(v) for k, v in values.items()}


def user_settings(root: Path = ROOT, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """local.settings.json `Values`, under the process environment (which wins)."""
    env = os.environ if env is None else env
    return {**file_values(settings_file(env, root)), **env}


def load_settings(root: Path = ROOT, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a local run uses: the user's, over `DEV_DEFAULTS`."""
    return {**DEV_DEFAULTS, **user_settings(root, env)}
