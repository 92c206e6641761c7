r"""`python -m ops numbers show|connect <E.164>`: what a Twilio number points at, and
pointing it at the app.

    python -m ops numbers show +18089255327
    python -m ops numbers connect +18089255327 --dry-run
    python -m ops numbers connect +18089255327
    python -m ops numbers connect <E.164> --base https://<app>.azurewebsites.net

`connect` sets, with method POST: the voice URL to the app's /api/voice and the SMS URL to
its /api/sms; both fallback URLs to the same webhooks (when a request fails, Twilio tries
the fallback: the app once more); the status callback (the number's calls) to /api/status.
A voice or SMS application set on the number is removed (Twilio would use the
application's URLs instead of the number's); a number on a SIP trunk is refused (its calls
go to the trunk). Only the fields that differ are changed. `--dry-run` prints each field,
old -> new, and changes nothing. A number the account does not have exits 3.

Where the app is: --base; else WEBHOOK_BASE_URL (environment); else FUNCTION_APP_HOST
(environment: azd sets it when it runs a hook); else the azd environment's
(.azure/<env>/.env, FUNCTION_APP_HOST); else WEBHOOK_BASE_URL of local.settings.json; else
the local app (http://127.0.0.1:7071).

Which Twilio account: for the app on this machine, the local settings (the local Twilio API
double, with the local defaults). For a deployment, Twilio's API with TWILIO_ACCOUNT_SID and
TWILIO_AUTH_TOKEN from the environment, else from the azd environment, else the secrets in
the deployment's Key Vault (KEY_VAULT_URL, read with your Azure login). TWILIO_API_BASE_URL
in the environment names another API (a test double: https, or http on this machine).
Neither the Account SID nor the token is ever printed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import azdenv
from ops import target as tgt
from ops.letters import json_of
from ops.localsettings import (
    LOCAL_AUTH_TOKEN,
    ROOT,
    file_values,
    is_loopback,
    load_settings,
    settings_file,
)
from ops.webhook import LOCAL_APP
from shared.numbers import E164
from shared.redaction import redact

NOT_FOUND = 3
TWILIO_API = "https://api.twilio.com"
ROUTES = {"voice": "/api/voice", "sms": "/api/sms", "status": "/api/status"}


def wanted(base: str) -> dict[str, str]:
    """The number's fields that point it at the app at `base`."""
    voice, sms, status = (base + ROUTES[r] for r in ("voice", "sms", "status"))
    return {"voice_url": voice, "voice_method": "POST",
            "voice_fallback_url": voice, "voice_fallback_method": "POST",
            "sms_url": sms, "sms_method": "POST",
            "sms_fallback_url": sms, "sms_fallback_method": "POST",
            "status_callback": status, "status_callback_method": "POST",
            "voice_application_sid": "", "sms_application_sid": ""}


SHOWN = (*wanted(""), "trunk_sid")


@dataclass(frozen=True)
class App:
    base: str
    source: str  # where `base` came from, for the reader

    @property
    def local(self) -> bool:
        return is_loopback(self.base)


@dataclass(frozen=True)
class Account:
    account_sid: str
    auth_token: str
    source: str  # where the credentials came from (never the values)
    api: str  # Twilio's API, or a local double

    def __repr__(self) -> str:  # no secret in a traceback or a log
        return f"Account(source={self.source!r}, api={self.api!r})"


def locate_app(base: str | None, env: Mapping[str, str] | None = None, root: Path = ROOT
               ) -> App:
    env = os.environ if env is None else env
    if base:
        return App(base.rstrip("/"), "--base")
    if env.get("WEBHOOK_BASE_URL"):
        return App(env["WEBHOOK_BASE_URL"].rstrip("/"), "WEBHOOK_BASE_URL (environment)")
    if env.get("FUNCTION_APP_HOST"):
        return App(f"https://{env['FUNCTION_APP_HOST']}",
                   "FUNCTION_APP_HOST (environment, as azd sets it for a hook)")
    found = azdenv.find(root, env)
    if found and found.values.get("FUNCTION_APP_HOST"):
        return App(f"https://{found.values['FUNCTION_APP_HOST']}",
                   f"FUNCTION_APP_HOST ({found.label})")
    path = settings_file(env, root)
    try:
        local = file_values(path).get("WEBHOOK_BASE_URL")
    except ValueError as exc:
        raise tgt.OpsError(str(exc)) from None
    if local:
        return App(local.rstrip("/"), f"WEBHOOK_BASE_URL ({path.name})")
    return App(LOCAL_APP, "the local app")


def _pair(values: Mapping[str, str]) -> tuple[str, str] | None:
    """Both credentials, unless one is missing, the local token, or a reference azd keeps
    to a vault (`akvs://`, as a hook sees a value set with `azd env set-secret`)."""
    sid, token = values.get("TWILIO_ACCOUNT_SID"), values.get("TWILIO_AUTH_TOKEN")
    if sid and token and token != LOCAL_AUTH_TOKEN and not any(
            v.startswith(azdenv.SECRET_REFERENCE) for v in (sid, token)):
        return sid, token
    return None


def _api(env: Mapping[str, str]) -> str:
    api = (env.get("TWILIO_API_BASE_URL") or TWILIO_API).rstrip("/")
    if not (api.startswith("https://") or (api.startswith("http://") and is_loopback(api))):
        raise tgt.OpsError(f"TWILIO_API_BASE_URL must be https (or http on this machine, for a "
                           f"local double): the auth token goes with every request; got {api!r}")
    return api


def account_for(app: App, env: Mapping[str, str] | None = None, root: Path = ROOT,
                secret_client_factory: Callable[[], Any] | None = None) -> Account:
    """The Twilio account whose numbers point at `app` (see the module's docstring)."""
    env = os.environ if env is None else env
    if app.local:
        values = load_settings(root, env)
        sid, token = values.get("TWILIO_ACCOUNT_SID"), values.get("TWILIO_AUTH_TOKEN")
        if not sid or not token:
            raise tgt.OpsError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not both set "
                               "(environment or local.settings.json)")
        return Account(sid, token, "the local settings", _api(values))
    api = _api(env)
    pair = _pair(env)
    if pair:
        return Account(*pair, "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (environment)", api)
    found = azdenv.find(root, env)
    pair = _pair(found.values) if found else None
    if found and pair:
        return Account(*pair, f"TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN ({found.label})", api)
    vault = env.get("KEY_VAULT_URL") or (found.values.get("KEY_VAULT_URL") if found else None)
    if not vault:
        raise tgt.OpsError(
            f"no Twilio credentials for {app.base}: set TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN, or KEY_VAULT_URL (`azd env get-values` shows it) to read them "
            "from the deployment's vault with your Azure login")
    return _from_vault(vault, api, secret_client_factory)


def _from_vault(vault: str, api: str, factory: Callable[[], Any] | None) -> Account:
    from shared.credentials import CredentialsError, KeyVaultSource
    from shared.settings import Settings

    names = Settings(key_vault_url=vault)
    source = KeyVaultSource(vault, names.account_sid_secret_name,
                            names.auth_token_secret_name,
                            factory or (lambda: _secret_client(vault)),
                            rotation_window_seconds=0)  # the current token is all it needs
    try:
        creds = source.fetch()
    except CredentialsError as exc:
        raise tgt.OpsError(f"{exc} (`az login` first; your login needs 'Key Vault Secrets "
                           "User' on the vault)", 1) from None
    return Account(creds.account_sid, creds.auth_token, f"Key Vault {vault}", api)


def _secret_client(vault: str) -> Any:
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(vault, DefaultAzureCredential(**tgt.credential_options()))


# -- Twilio ------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return "" if value is None else str(value)


class Numbers:
    """The account's IncomingPhoneNumbers through twilio-python (its async client, the
    project's HTTP client with the origin rewrite for local doubles)."""

    def __init__(self, account: Account) -> None:
        from twilio.rest import Client

        from shared.twilio_rest import TWILIO_ORIGIN, RoutedHttpClient

        self.account = account
        self.http = RoutedHttpClient(account.api if account.api != TWILIO_API else TWILIO_ORIGIN)
        self.client = Client(account.account_sid, account.auth_token, http_client=self.http,
                             environment={})

    async def __aenter__(self) -> Numbers:
        return self

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        await self.http.close()
        line = self.explain(exc) if exc is not None else None
        if line is not None:
            raise tgt.OpsError(line, 1) from None

    def explain(self, exc: BaseException) -> str | None:
        import aiohttp
        from twilio.base.exceptions import TwilioException, TwilioRestException

        where = f"the Twilio API at {self.account.api}"
        status, code, message = None, None, ""
        if isinstance(exc, TwilioRestException):  # its text holds the URL: the Account SID
            status, code, message = exc.status, exc.code, exc.msg
        elif isinstance(exc, TwilioException) and len(exc.args) > 1:
            # A list's page that did not come: twilio raises it with the response.
            status = getattr(exc.args[1], "status_code", None)
            body = json_of(str(getattr(exc.args[1], "text", "")))
            if isinstance(body, dict):
                code, message = body.get("code"), str(body.get("message", ""))
        if status == 401:
            return (f"{where} refused the credentials from {self.account.source} (401, "
                    f"error {code}): check them")
        if status is not None:
            return f"{where} answered {status} (error {code}): {redact(message)}"
        if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
            hint = "is scripts/run-local running?" if is_loopback(self.account.api) else \
                "check your network"
            return f"cannot reach {where} ({type(exc).__name__}); {hint}"
        return None

    async def find(self, number: str) -> Any:
        """The account's number, exactly (Twilio's filter also matches partial numbers)."""
        found = await self.client.incoming_phone_numbers.list_async(phone_number=number,
                                                                    limit=20)
        exact = [n for n in found if n.phone_number == number]
        if not exact:
            raise tgt.OpsError(f"the account ({self.account.source}) has no number {number} "
                               f"at {self.account.api}", NOT_FOUND)
        return exact[0]

    async def update(self, sid: str, changes: dict[str, str]) -> None:
        await self.client.incoming_phone_numbers(sid).update_async(**changes)


def fields_of(number: Any) -> dict[str, str]:
    return {name: _text(getattr(number, name, None)) for name in SHOWN}


def heading(number: Any, account: Account) -> str:
    return (f"number {number.phone_number} ({number.sid}, \"{_text(number.friendly_name)}\") "
            f"at {account.api}, credentials from {account.source}")


def changes_to(current: dict[str, str], app: App) -> dict[str, str]:
    return {k: v for k, v in wanted(app.base).items() if current.get(k, "") != v}


def render(current: dict[str, str], app: App, changes: dict[str, str] | None) -> list[str]:
    width = max(map(len, SHOWN)) + 2
    out = []
    for name in SHOWN:
        old = current.get(name) or "-"
        if changes is None:
            out.append(f"  {name:<{width}}{old}")
        elif name in changes:
            out.append(f"  {name:<{width}}{old} -> {changes[name] or '(none)'}")
        else:
            out.append(f"  {name:<{width}}{old} (unchanged)")
    return out


def number_of(text: str) -> str:
    if not E164.match(text):
        raise tgt.OpsError(f"{text!r} is not an E.164 number such as +15551234567")
    return text


def resolve(args: argparse.Namespace) -> tuple[str, App, Account]:
    """The number asked for, the app, and the account that has the number."""
    number = number_of(args.number)
    app = locate_app(args.base)
    return number, app, account_for(app)


async def run_show(args: argparse.Namespace) -> int:
    number, app, account = resolve(args)
    async with Numbers(account) as api:
        found = await api.find(number)
    current = fields_of(found)
    changes = changes_to(current, app)
    print(heading(found, account))
    print("\n".join(render(current, app, None)))
    if changes:
        print(f"It does not point at {app.base} ({app.source}): `python -m ops numbers connect "
              f"{number}` would change {len(changes)} fields (--dry-run shows them).")
    else:
        print(f"It points at {app.base} ({app.source}).")
    return 0


async def run_connect(args: argparse.Namespace) -> int:
    number, app, account = resolve(args)
    async with Numbers(account) as api:
        found = await api.find(number)
        current = fields_of(found)
        if current["trunk_sid"]:
            raise tgt.OpsError(f"{number} is on SIP trunk {current['trunk_sid']}: its calls go "
                               "to the trunk, whatever its voice URL; take it off the trunk "
                               "first (Twilio console, Elastic SIP Trunking)")
        changes = changes_to(current, app)
        print(f"{heading(found, account)}\n  -> {app.base} ({app.source})")
        print("\n".join(render(current, app, changes)))
        if not changes:
            print(f"Already connected to {app.base}: nothing to change.")
            return 0
        if args.dry_run:
            print(f"Dry run: nothing was changed ({len(changes)} fields would be).")
            return 0
        await api.update(found.sid, changes)
    print(f"Connected: {len(changes)} fields changed; calls and messages to {number} now "
          f"reach {app.base}.")
    return 0


def add_parser(commands: Any) -> None:
    n = commands.add_parser("numbers", help="what a Twilio number points at; point it at the app",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = n.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, run, text in (("show", run_show, "what the number's webhooks point at now"),
                            ("connect", run_connect, "point the number's webhooks at the app")):
        p = sub.add_parser(name, help=text, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("number", metavar="E.164", help="the number, such as +15551234567")
        p.add_argument("--base", metavar="URL",
                       help="the app: https://<app>.azurewebsites.net (default: see above)")
        if name == "connect":
            p.add_argument("--dry-run", action="store_true",
                           help="print what would change (old -> new); change nothing")
        p.set_defaults(run=run)
