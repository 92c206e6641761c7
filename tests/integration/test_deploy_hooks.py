"""The azd hooks (infra/hooks), against loopback doubles of Azure: the HTTPS Key Vault double
(with writes, the 403 a new role assignment gives until it takes effect, and a deleted secret),
a storage queue double over HTTPS, the app's /api/health, and the real AzureDeveloperCliCredential
reading a token from a stand-in `azd` on PATH. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.hooks import health, numbers, roles, seed, wait
from infra.hooks.__main__ import Azure, postdeploy, postprovision
from infra.hooks.azd import AzdEnv, HookError, credential
from shared.settings import Settings
from tests.doubles import KeyVaultDouble, LoopbackServer, Recorded, Tls, _json
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN
from tests.integration.bicep import ROOT

ROTATED = "f" * 32  # a token written after a rotation


class Vault(KeyVaultDouble):
    """The Key Vault double, plus what the hooks do: `set_secret` (PUT, a new version), the
    403 ForbiddenByRbac a principal gets until its new role takes effect, and a deleted
    secret that soft delete keeps (a PUT then answers 409)."""

    def __init__(self, tls: Tls, secrets: dict[str, str]) -> None:
        super().__init__(tls.server, secrets)
        self.forbidden = 0  # answer 403 to this many more authorised requests
        self.deleted: set[str] = set()

    def handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> Any:
        authorised = req.headers.get("Authorization", "").startswith("Bearer ")
        with self.lock:
            forbid = authorised and self.forbidden > 0
            self.forbidden -= forbid
        if forbid:
            return _json(403, {"error": {"code": "Forbidden", "message": "Caller is not authorized",
                                         "innererror": {"code": "ForbiddenByRbac"}}})
        name = urlsplit(req.path).path.strip("/").split("/")[-1]
        if authorised and req.method == "PUT":
            if name in self.deleted:
                return _json(409, {"error": {"code": "Conflict", "message": (
                    f"Secret {name} is currently in a deleted but recoverable state")}})
            self.secrets[name] = json.loads(req.body)["value"]
            return _json(200, {"value": self.secrets[name],
                               **self._item(name, len(self.secrets.history[name]) - 1)})
        return super().handle(req, handler)

    def versions(self, name: str) -> list[str]:
        return [v for v, _, _ in self.secrets.history.get(name, [])]


class Queue(LoopbackServer):
    """A storage queue over HTTPS: peeks answer 403 AuthorizationPermissionMismatch while
    `forbidden` lasts, then an empty queue."""

    def __init__(self, tls: Tls) -> None:
        super().__init__(tls.server)
        self.forbidden = 0

    def handle(self, req: Recorded, handler: BaseHTTPRequestHandler) -> Any:
        with self.lock:
            forbid = self.forbidden > 0
            self.forbidden -= forbid
        xml = {"Content-Type": "application/xml"}
        if forbid:
            return 403, {**xml, "x-ms-error-code": "AuthorizationPermissionMismatch"}, (
                b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermission'
                b"Mismatch</Code><Message>This request is not authorized to perform this "
                b"operation using this permission.</Message></Error>")
        return 200, xml, b'<?xml version="1.0" encoding="utf-8"?><QueueMessagesList />'


class Token:
    """A TokenCredential for the doubles (the real one, AzureDeveloperCliCredential, is
    exercised in test_the_hooks_sign_in_as_azd_does)."""

    def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("test-token", int(time.time()) + 3600)


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


class NoClock(wait.Clock):
    """Time passes only when the hook sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def vault(tls: Tls) -> Iterator[Vault]:
    with Vault(tls, {}) as kv:
        yield kv  # type: ignore[misc]


@pytest.fixture
def mine(tls: Tls) -> Iterator[Vault]:
    """The deployer's own vault, where `azd env set-secret` keeps the values."""
    with Vault(tls, {"twilio-sid": ACCOUNT_SID, "twilio-token": AUTH_TOKEN}) as kv:
        yield kv  # type: ignore[misc]


@pytest.fixture
def queue(tls: Tls) -> Iterator[Queue]:
    with Queue(tls) as q:
        yield q  # type: ignore[misc]


def client(kv: Vault, tls: Tls) -> Any:
    from azure.keyvault.secrets import SecretClient

    return SecretClient(kv.url, Token(), connection_verify=tls.ca_path,
                        verify_challenge_resource=False, retry_total=0)


def azure(tls: Tls, vaults: dict[str, Vault], queue: Queue) -> Azure:
    """The hooks' clients, each vault URL routed to its double."""
    from azure.storage.queue import QueueClient

    def vault_for(url: str) -> Any:
        return client(vaults[urlsplit(url).hostname.split(".")[0]], tls)  # type: ignore[union-attr]

    def queue_for(url: str, name: str) -> Any:
        assert url == "https://stapp.queue.core.windows.net"
        return QueueClient(queue.url, name, credential=Token(), connection_verify=tls.ca_path,
                           retry_total=0)
    return Azure(vault=vault_for, queue=queue_for)


def azd_env(**values: str) -> AzdEnv:
    return AzdEnv({"AZURE_ENV_NAME": "prod", "KEY_VAULT_NAME": "kv-app",
                   "AZURE_STORAGE_ACCOUNT_NAME": "stapp", "OUTBOUND_QUEUE_NAME": "twilio-outbound",
                   "AZURE_PRINCIPAL_ID": "00000000-0000-0000-0000-000000000001",
                   "FUNCTION_APP_HOST": "func-x.azurewebsites.net", **values})


SET_SECRET = {"TWILIO_ACCOUNT_SID": "akvs://sub-1/kv-mine/twilio-sid",
              "TWILIO_AUTH_TOKEN": "akvs://sub-1/kv-mine/twilio-token"}


# --- Waiting, bounded -----------------------------------------------------------------------

def test_a_wait_says_what_it_waits_for_and_gives_up_at_its_budget() -> None:
    clock, say, answers = NoClock(), Lines(), iter(["403 Forbidden"] * 3 + [None])
    assert wait.until(lambda: next(answers), what="the roles", budget_s=60, every_s=15,
                      say=say, clock=clock) is None
    assert say == [f"  waiting for the roles: 403 Forbidden; next try in 15 s ({t} of at most 1:00)"
                   for t in ("0:00", "0:15", "0:30")]
    clock, say = NoClock(), Lines()
    assert wait.until(lambda: "403 Forbidden", what="the roles", budget_s=60, every_s=15,
                      say=say, clock=clock) == "403 Forbidden"
    assert len(say) == 4 and clock.t == 60  # tries at 0, 15, 30, 45 and 60 s, then no more


# --- postprovision: the roles, then the secrets ---------------------------------------------

def test_postprovision_waits_for_the_roles_then_writes_each_absent_secret_once(
        tls: Tls, vault: Vault, mine: Vault, queue: Queue) -> None:
    vault.forbidden, queue.forbidden = 3, 2  # the new role assignments are not effective yet
    say, clock = Lines(), NoClock()
    env = azd_env(**SET_SECRET)
    assert postprovision(env, azure(tls, {"kv-app": vault, "kv-mine": mine}, queue),
                         say=say, clock=clock) == 0
    waited = [line for line in say if line.startswith("  waiting for the role assignments")]
    assert [line.split(": ", 1)[1].split(";")[0] for line in waited] == [
        "Key Vault answered 403 Forbidden"] * 3 + [
        "the storage account answered 403 AuthorizationPermissionMismatch"] * 2
    assert vault.versions("twilio-account-sid") == [ACCOUNT_SID]
    assert vault.versions("twilio-auth-token") == [AUTH_TOKEN]
    assert "Wrote twilio-auth-token to kv-app (its first version; from TWILIO_AUTH_TOKEN)." in say
    assert ACCOUNT_SID not in say.text and AUTH_TOKEN not in say.text

    # The next provision: the secrets exist, so nothing is written, whatever the environment holds.
    say = Lines()
    assert postprovision(env, azure(tls, {"kv-app": vault, "kv-mine": mine}, queue),
                         say=say, clock=NoClock()) == 0
    assert vault.versions("twilio-auth-token") == [AUTH_TOKEN]
    assert [line.split(" (")[0] for line in say if line.startswith("Kept")] == [
        "Kept twilio-account-sid in kv-app", "Kept twilio-auth-token in kv-app"]


def test_a_reprovision_never_undoes_a_rotation(tls: Tls, mine: Vault, queue: Queue) -> None:
    """The token was rotated in the vault; the azd environment still holds the old one (in
    plain text, even): the provision keeps the rotated token as current."""
    with Vault(tls, {"twilio-account-sid": ACCOUNT_SID, "twilio-auth-token": AUTH_TOKEN}) as kv:
        kv.secrets["twilio-auth-token"] = ROTATED
        say = Lines()
        env = azd_env(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
        assert postprovision(env, azure(tls, {"kv-app": kv, "kv-mine": mine}, queue),
                             say=say, clock=NoClock()) == 0
        assert kv.versions("twilio-auth-token") == [AUTH_TOKEN, ROTATED]
        assert kv.requests and all(r.method == "GET" for r in kv.requests)
        assert AUTH_TOKEN not in say.text and ROTATED not in say.text


def test_without_values_nothing_is_written_and_the_hook_says_how(tls: Tls, vault: Vault) -> None:
    say = Lines()
    assert seed.seed(azd_env(), client(vault, tls), lambda v, s: "", vault_name="kv-app",
                     say=say) == []
    assert vault.versions("twilio-auth-token") == []
    assert say == ["Not set yet in kv-app: twilio-account-sid, twilio-auth-token. Until they are, "
                   "webhooks answer 503 and jobs fail their attempts, then wait in -poison for "
                   "`ops deadletters replay`. Set "
                   "`azd env set-secret TWILIO_ACCOUNT_SID` and `azd env set-secret "
                   "TWILIO_AUTH_TOKEN`, then `azd hooks run postprovision` (docs/deploy.md, Set "
                   "the secrets)."]


def test_a_plain_value_is_used_with_a_warning_that_never_shows_it(tls: Tls, vault: Vault) -> None:
    say = Lines()
    env = azd_env(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    assert seed.seed(env, client(vault, tls), lambda v, s: "", vault_name="kv-app",
                     say=say) == ["twilio-account-sid", "twilio-auth-token"]
    warning = [line for line in say if "plain text" in line]
    assert [w.split(" is in plain text in ")[0] for w in warning] == [
        "  warning: TWILIO_ACCOUNT_SID", "  warning: TWILIO_AUTH_TOKEN"]
    assert all(".azure/prod/.env" in w and "azd env set-secret" in w for w in warning)
    assert ACCOUNT_SID not in say.text and AUTH_TOKEN not in say.text


def test_a_malformed_value_is_refused_before_anything_is_written(tls: Tls, vault: Vault) -> None:
    env = azd_env(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN="not-a-token-" + "x" * 20)
    with pytest.raises(HookError) as err:
        seed.seed(env, client(vault, tls), lambda v, s: "", vault_name="kv-app", say=Lines())
    assert str(err.value).startswith("The Twilio auth token from the azd environment "
                                     "(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) is not 32 letters "
                                     "and digits. Nothing was written to kv-app")
    assert "not-a-token" not in str(err.value)
    assert vault.versions("twilio-account-sid") == []


def test_a_reference_to_a_missing_secret_names_the_variable(tls: Tls, vault: Vault,
                                                            mine: Vault) -> None:
    env = azd_env(TWILIO_ACCOUNT_SID=SET_SECRET["TWILIO_ACCOUNT_SID"],
                  TWILIO_AUTH_TOKEN="akvs://sub-1/kv-mine/gone")

    def resolve(_: str, secret: str) -> str:
        return str(client(mine, tls).get_secret(secret).value)

    with pytest.raises(HookError) as err:
        seed.seed(env, client(vault, tls), resolve, vault_name="kv-app", say=Lines())
    assert str(err.value) == ("TWILIO_AUTH_TOKEN refers to secret gone in vault kv-mine, which is "
                              "not there: set it again with `azd env set-secret TWILIO_AUTH_TOKEN`.")
    assert vault.versions("twilio-account-sid") == []


def test_a_deleted_secret_is_recovered_not_overwritten(tls: Tls, vault: Vault) -> None:
    vault.deleted.add("twilio-account-sid")
    env = azd_env(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    with pytest.raises(HookError) as err:
        seed.seed(env, client(vault, tls), lambda v, s: "", vault_name="kv-app", say=Lines())
    assert "`az keyvault secret recover --vault-name kv-app --name twilio-account-sid`" in str(err.value)


def test_roles_that_never_take_effect_stop_the_hook_with_what_to_do(
        tls: Tls, vault: Vault, mine: Vault, queue: Queue) -> None:
    vault.forbidden = 10**6
    say = Lines()
    assert postprovision(azd_env(**SET_SECRET), azure(tls, {"kv-app": vault, "kv-mine": mine}, queue),
                         say=say, clock=NoClock()) == 1
    assert say[-1].startswith("Your roles still do not work after 10 minutes (Key Vault answered "
                              "403 Forbidden). Nothing is wrong with the deployment: wait a few "
                              "minutes, then run `azd hooks run postprovision` and `azd deploy`")
    assert sum(line.startswith("  waiting") for line in say) == 40  # every 15 s for 10 minutes
    assert vault.versions("twilio-auth-token") == []


def test_the_hooks_secret_names_are_the_apps() -> None:
    defaults = Settings(key_vault_url=None)
    assert [name for _, name in seed.SECRETS] == [defaults.account_sid_secret_name,
                                                  defaults.auth_token_secret_name]


# --- postdeploy: the app answers, then the numbers ------------------------------------------

class App(ThreadingHTTPServer):
    """/api/health as the deployed app answers it, after `cold` 503s."""

    def __init__(self, cold: int) -> None:
        owner = self
        self.cold = cold

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = (503, b"") if owner.cold > 0 else (200, json.dumps(
                    {"status": "ok", "version": "1.0.0", "job_schema_version": 1}).encode())
                owner.cold -= 1
                self.send_response(status if self.path == "/api/health" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_the_health_wait_polls_until_the_app_answers() -> None:
    app, say = App(cold=2), Lines()
    try:
        assert health.wait_for_app(app.url, say=say, clock=NoClock())
    finally:
        app.shutdown()
    assert [line.split(": ", 1)[1].split(";")[0] for line in say[:-1]] == ["HTTP 503"] * 2
    assert say[-1] == f"The app answers: {app.url}/api/health"


def test_an_app_that_never_answers_fails_postdeploy_and_connects_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, say, ran = App(cold=10**6), Lines(), []
    monkeypatch.setattr("infra.hooks.azd.AzdEnv.app_url", lambda self: app.url)
    try:
        assert postdeploy(azd_env(TWILIO_CONNECT_NUMBERS="+15551234567"), say=say,
                          clock=NoClock(), run=lambda argv: ran.append(argv) or 0) == 1
    finally:
        app.shutdown()
    assert ran == []
    assert say[-1].startswith(f"{app.url}/api/health still does not answer after 5 minutes (HTTP 503)")


def test_numbers_are_connected_one_by_one_and_a_failure_never_fails_the_hook(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, say, ran = App(cold=0), Lines(), []

    def run(argv: Sequence[str]) -> int:
        ran.append(list(argv))
        return 1 if argv[-1] == "+15557654321" else 0

    monkeypatch.setattr("infra.hooks.azd.AzdEnv.app_url", lambda self: app.url)
    try:
        assert postdeploy(azd_env(TWILIO_CONNECT_NUMBERS=" +15551234567, +15557654321,5551,"),
                          say=say, clock=NoClock(), run=run) == 0
    finally:
        app.shutdown()
    assert ran == [["numbers", "connect", "+15551234567"], ["numbers", "connect", "+15557654321"]]
    assert "  TWILIO_CONNECT_NUMBERS: '5551' is not an E.164 number" in say[-2]
    assert say[-1].startswith("Not connected: +15557654321, 5551. The deployment itself is fine: "
                              "fix the number and run `.venv/bin/python -m ops numbers connect "
                              "<E.164>` for each")


def test_no_numbers_is_one_line() -> None:
    say, ran = Lines(), []
    assert numbers.connect(azd_env(), say=say, run=lambda argv: ran.append(argv) or 0) == []
    assert (say, ran) == (["TWILIO_CONNECT_NUMBERS is not set: no Twilio number connected "
                           "(docs/deploy.md, After azd up)."], [])


def test_numbers_are_connected_by_the_ops_command_of_this_interpreter(tmp_path: Path) -> None:
    """run_ops runs `<this python> -m ops numbers connect <E.164>` from the project folder."""
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "__main__.py").write_text(
        "import sys; print('ops', *sys.argv[1:]); sys.exit(3)\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.');"
                               f"sys.path.append({str(ROOT)!r});"
                               "from infra.hooks.numbers import run_ops;"
                               "sys.exit(run_ops(['numbers', 'connect', '+15551234567']))"],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.chdir(cwd)
    assert (code.returncode, code.stdout) == (3, "ops numbers connect +15551234567\n")


# --- The wrapper azd runs, and azd's own login -----------------------------------------------

def hook(*argv: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "TWILIO_"))}
    return subprocess.run([str(cwd / "infra" / "hooks" / "run"), *argv], cwd="/",
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_the_wrapper_runs_the_hook_from_the_project_and_names_what_is_missing() -> None:
    res = hook("postprovision")
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == ("infra/hooks postprovision: KEY_VAULT_NAME, AZURE_STORAGE_ACCOUNT_NAME, "
                          "OUTBOUND_QUEUE_NAME not in the azd environment: these are outputs of "
                          "infra/main.bicep; run `azd provision` first.\n")
    res = hook("postdeploy")
    assert res.returncode == 1 and res.stderr.startswith("infra/hooks postdeploy: FUNCTION_APP_HOST")


def test_the_wrapper_asks_for_bootstrap_without_a_venv(tmp_path: Path) -> None:
    (tmp_path / "infra" / "hooks").mkdir(parents=True)
    shutil.copy2(ROOT / "infra" / "hooks" / "run", tmp_path / "infra" / "hooks" / "run")
    res = hook("postdeploy", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr == (f"infra/hooks: no .venv in {tmp_path}: run scripts/bootstrap once, then "
                          "`azd hooks run postdeploy`.\n")


def test_the_hooks_sign_in_as_azd_does(tmp_path: Path, tls: Tls, vault: Vault,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """credential() is azure-identity's AzureDeveloperCliCredential: it asks `azd auth token`
    (here a stand-in on PATH that records its arguments) for the vault's token."""
    from azure.keyvault.secrets import SecretClient

    record = tmp_path / "azd-args"
    azd = tmp_path / "azd"
    azd.write_text(f'#!/bin/sh\necho "$@" > {record}\n'
                   'echo \'{"token": "azd-token", "expiresOn": "2099-01-01T00:00:00Z"}\'\n')
    azd.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    tenant = "00000000-0000-0000-0000-000000000000"  # the tenant the double's challenge names
    cred = credential(AzdEnv({"AZURE_TENANT_ID": tenant}))
    vault_client = SecretClient(vault.url, cred, connection_verify=tls.ca_path,
                                verify_challenge_resource=False, retry_total=0)
    assert roles.vault_probe(vault_client, "twilio-account-sid") is None  # 404: an answer
    assert record.read_text().split() == ["auth", "token", "--output", "json", "--no-prompt",
                                          "--scope", "https://vault.azure.net/.default",
                                          "--tenant-id", tenant]
    assert [r.headers.get("Authorization") for r in vault.requests][-1] == "Bearer azd-token"
