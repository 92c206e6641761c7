"""`python -m ops numbers show|connect` end to end against Prism serving Twilio's API spec,
behind a recorder that keeps each request's form; the deployment found as an azd hook sees
it; credentials from the deployment's Key Vault (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops import numbers
from ops.__main__ import main as ops_main
from tests.doubles import KeyVaultDouble, Tls, TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN
from tests.integration.conftest import secret_client_factory

ROOT = Path(__file__).resolve().parents[2]
# The number in Prism's example answer (Twilio's spec, IncomingPhoneNumbers, readFull).
NUMBER = "+18089255327"
APP = "https://func-test.azurewebsites.net"


@pytest.fixture
def env(prism_recorder: TwilioDouble, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> dict[str, str]:
    values = {"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"),
              "TWILIO_API_BASE_URL": prism_recorder.url, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
              "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    for name in ("WEBHOOK_BASE_URL", "FUNCTION_APP_HOST", "AZURE_ENV_NAME", "KEY_VAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ops_main(list(argv))
    out = capsys.readouterr()
    assert ACCOUNT_SID not in out.out + out.err and AUTH_TOKEN not in out.out + out.err
    return code, out.out, out.err


def heading(api: str) -> str:
    return (f'number {NUMBER} (PNaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, "(808) 925-5327") at '
            f"{api}, credentials from TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (environment)")


def test_show_prints_what_the_number_points_at(env: dict[str, str],
                                               prism_recorder: TwilioDouble,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "numbers", "show", NUMBER, "--base", APP)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        heading(prism_recorder.url),
        "  voice_url               -",
        "  voice_method            POST",
        "  voice_fallback_url      -",
        "  voice_fallback_method   POST",
        "  sms_url                 -",
        "  sms_method              POST",
        "  sms_fallback_url        -",
        "  sms_fallback_method     POST",
        "  status_callback         -",
        "  status_callback_method  POST",
        "  voice_application_sid   -",
        "  sms_application_sid     -",
        "  trunk_sid               -",
        f"It does not point at {APP} (--base): `python -m ops numbers connect {NUMBER}` would "
        "change 5 fields (--dry-run shows them)."]
    [listed] = prism_recorder.requests
    assert (listed.method, listed.path) == (
        "GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json?PhoneNumber="
               "%2B18089255327&PageSize=20")
    assert listed.status == 200


def test_connect_sets_the_webhooks_fallbacks_and_status_callback(
        env: dict[str, str], prism_recorder: TwilioDouble,
        capsys: pytest.CaptureFixture[str]) -> None:
    changes = [
        f"  voice_url               - -> {APP}/api/voice",
        "  voice_method            POST (unchanged)",
        f"  voice_fallback_url      - -> {APP}/api/voice",
        "  voice_fallback_method   POST (unchanged)",
        f"  sms_url                 - -> {APP}/api/sms",
        "  sms_method              POST (unchanged)",
        f"  sms_fallback_url        - -> {APP}/api/sms",
        "  sms_fallback_method     POST (unchanged)",
        f"  status_callback         - -> {APP}/api/status",
        "  status_callback_method  POST (unchanged)",
        "  voice_application_sid   - (unchanged)",
        "  sms_application_sid     - (unchanged)",
        "  trunk_sid               - (unchanged)"]
    code, out, _ = run(capsys, "numbers", "connect", NUMBER, "--base", APP, "--dry-run")
    assert code == 0 and out.splitlines() == [
        heading(prism_recorder.url), f"  -> {APP} (--base)", *changes,
        "Dry run: nothing was changed (5 fields would be)."]
    assert [r.method for r in prism_recorder.requests] == ["GET"]  # nothing changed

    code, out, _ = run(capsys, "numbers", "connect", NUMBER, "--base", APP)
    assert code == 0 and out.splitlines() == [
        heading(prism_recorder.url), f"  -> {APP} (--base)", *changes,
        f"Connected: 5 fields changed; calls and messages to {NUMBER} now reach {APP}."]
    update = prism_recorder.requests[-1]
    assert (update.method, update.path, update.status) == (
        "POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/"
                "PNaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json", 200)  # Prism checked it on the spec
    assert update.form == {"VoiceUrl": [f"{APP}/api/voice"],
                           "VoiceFallbackUrl": [f"{APP}/api/voice"],
                           "SmsUrl": [f"{APP}/api/sms"], "SmsFallbackUrl": [f"{APP}/api/sms"],
                           "StatusCallback": [f"{APP}/api/status"]}


def test_a_number_the_account_does_not_have_exits_3(env: dict[str, str],
                                                    prism_recorder: TwilioDouble,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("show", "connect"):
        code, out, err = run(capsys, "numbers", action, "+15551234567", "--base", APP)
        assert (code, out) == (3, "")
        assert err == ("python -m ops numbers: the account (TWILIO_ACCOUNT_SID / "
                       "TWILIO_AUTH_TOKEN (environment)) has no number +15551234567 at "
                       f"{prism_recorder.url}\n")
    code, _, err = run(capsys, "numbers", "connect", "555-1234", "--base", APP)
    assert code == 2 and err == ("python -m ops numbers: '555-1234' is not an E.164 number "
                                 "such as +15551234567\n")
    assert all(r.method == "GET" for r in prism_recorder.requests)


def test_the_azd_hook_connects_the_deployment_it_runs_for(
        env: dict[str, str], prism_recorder: TwilioDouble) -> None:
    """What the post-deploy hook runs, with the variables azd gives a hook."""
    hook = {**os.environ, **env, "AZURE_ENV_NAME": "dev",
            "FUNCTION_APP_HOST": "func-hook.azurewebsites.net"}
    done = subprocess.run([sys.executable, "-m", "ops", "numbers", "connect", NUMBER],
                          cwd=ROOT, env=hook, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.splitlines()[1] == ("  -> https://func-hook.azurewebsites.net "
                                           "(FUNCTION_APP_HOST (environment, as azd sets it "
                                           "for a hook))")
    assert prism_recorder.requests[-1].form["SmsUrl"] == [
        "https://func-hook.azurewebsites.net/api/sms"]


def test_twilio_not_running_is_one_line(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from devhost import services

    closed = f"http://127.0.0.1:{services.free_port()}"
    monkeypatch.setenv("TWILIO_API_BASE_URL", closed)
    code, out, err = run(capsys, "numbers", "show", NUMBER, "--base", APP)
    assert (code, out) == (1, "")
    assert err == (f"python -m ops numbers: cannot reach the Twilio API at {closed} "
                   "(ClientConnectorError); is scripts/run-local running?\n")
    monkeypatch.setenv("TWILIO_API_BASE_URL", "http://twilio.example")
    code, _, err = run(capsys, "numbers", "show", NUMBER, "--base", APP)
    assert code == 2 and err.startswith("python -m ops numbers: TWILIO_API_BASE_URL must be "
                                        "https (or http on this machine")


def test_the_deployment_is_found_in_its_azd_environment(tmp_path: Path) -> None:
    (tmp_path / ".azure" / "dev").mkdir(parents=True)
    (tmp_path / ".azure" / "config.json").write_text('{"defaultEnvironment": "dev"}')
    (tmp_path / ".azure" / "dev" / ".env").write_text(
        'FUNCTION_APP_HOST="func-azd.azurewebsites.net"\n'
        f'TWILIO_ACCOUNT_SID="{ACCOUNT_SID}"\nTWILIO_AUTH_TOKEN="{AUTH_TOKEN}"\n')
    none = {"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")}
    app = numbers.locate_app(None, none, tmp_path)
    assert app == numbers.App("https://func-azd.azurewebsites.net",
                              "FUNCTION_APP_HOST (azd env dev)")
    account = numbers.account_for(app, none, tmp_path)
    assert (account.account_sid, account.auth_token, account.source, account.api) == (
        ACCOUNT_SID, AUTH_TOKEN, "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (azd env dev)",
        "https://api.twilio.com")
    assert AUTH_TOKEN not in repr(account) and ACCOUNT_SID not in repr(account)
    local = numbers.locate_app(None, {"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"),
                                      "AZURE_ENV_NAME": "other"}, tmp_path)
    assert local == numbers.App("http://127.0.0.1:7071", "the local app")
    assert numbers.account_for(local, none, tmp_path).source == "the local settings"


def test_the_credentials_come_from_the_deployments_vault(
        key_vault: KeyVaultDouble, tls: Tls, tmp_path: Path) -> None:
    env = {"KEY_VAULT_URL": key_vault.url, "LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")}
    app = numbers.App(APP, "--base")
    account = numbers.account_for(app, env, tmp_path,
                                  secret_client_factory(key_vault.url, tls.ca_path))
    assert (account.account_sid, account.auth_token, account.source) == (
        ACCOUNT_SID, AUTH_TOKEN, f"Key Vault {key_vault.url}")
    assert key_vault.reads("twilio-auth-token") == 1
    # In a hook, a secret set with `azd env set-secret` is a reference, not the value.
    hook = {**env, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": "akvs://sub/kv-x/twilio-auth-token"}
    assert numbers.account_for(app, hook, tmp_path, secret_client_factory(
        key_vault.url, tls.ca_path)).source == f"Key Vault {key_vault.url}"
    # No credentials anywhere: one line on where they can come from.
    with pytest.raises(numbers.tgt.OpsError, match=f"no Twilio credentials for {APP}: set "
                                                   "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, "
                                                   "or KEY_VAULT_URL"):
        numbers.account_for(app, {"LOCAL_SETTINGS_FILE": env["LOCAL_SETTINGS_FILE"]}, tmp_path)


def test_refused_credentials_are_named_by_where_they_came_from_never_shown(
        env: dict[str, str], prism_recorder: TwilioDouble,
        capsys: pytest.CaptureFixture[str]) -> None:
    prism_recorder.auth_token = "another-token"
    code, out, err = run(capsys, "numbers", "show", NUMBER, "--base", APP)
    assert (code, out) == (1, "")
    assert err == (f"python -m ops numbers: the Twilio API at {prism_recorder.url} refused the "
                   "credentials from TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (environment) "
                   "(401, error 20003): check them\n")
