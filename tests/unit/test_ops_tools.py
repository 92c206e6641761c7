"""The operator tools' pure parts: id derivation, times, selection, dead-letter reading, the
job row's rendering, error lines, target resolution, and the local settings and front."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from devhost import run_local, twilio_front
from ops import deadletters as dl
from ops import enqueue, jobs, ledger, letters, replay, target, text, webhook
from ops.__main__ import main as ops_main
from ops.__main__ import parser as ops_parser
from ops.localsettings import DEV_DEFAULTS, LOCAL_CALL_FLOW, ROOT, file_values, load_settings
from shared import deadletters
from shared import jobs as jobs_module
from shared.settings import Settings

NOW = 1_795_000_000.0
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@=+-]{0,127}$")


# -- replay ids --------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "new"), [
    ("order-1042", "order-1042.r1"),
    ("order-1042.r1", "order-1042.r2"),
    ("a.r9", "a.r10"),
    ("msg-5b2c", "msg-5b2c.r1"),
    ("v1.release", "v1.release.r1"),
])
def test_next_id(key: str, new: str) -> None:
    assert replay.next_id(key) == new


def test_next_id_of_a_long_key_fits_the_pattern_and_is_stable() -> None:
    key = "k" * 128
    first = replay.next_id(key)
    assert len(first) == 128 and ID.match(first) and first.endswith(".r1")
    assert replay.next_id(key) == first  # the same dead letter, the same new id
    second = replay.next_id(first)
    assert len(second) <= 128 and ID.match(second) and second.endswith(".r2")
    assert all(jobs_module.valid_id(i) for i in (first, second))  # the schema's own rule


# -- times -------------------------------------------------------------------------------

def test_since_durations_and_dates() -> None:
    assert text.since("30m", NOW) == NOW - 1800
    assert text.since("2h", NOW) == NOW - 7200
    assert text.since("7d", NOW) == NOW - 7 * 86400
    assert text.since("2026-11-27T14:00", NOW) == dt.datetime(
        2026, 11, 27, 14, tzinfo=dt.UTC).timestamp()
    with pytest.raises(ValueError, match="--since 'yesterday'"):
        text.since("yesterday", NOW)


def test_spans() -> None:
    assert [text.span(s) for s in (5, 75, 7300, 200000)] == ["5s", "1m", "2h", "2d"]
    assert text.ago(NOW - 90, NOW) == "1m ago" and text.ago(NOW + 30, NOW) == "in 30s"


def test_table_pads_columns_and_cuts_the_last_on_a_terminal() -> None:
    out = text.table(["A", "REASON"], [["xx", "r" * 300]], fit=True)
    first, second = out.splitlines()
    assert first == "A   REASON"
    assert second.startswith("xx  rrr") and second.endswith("…") and len(second) < 300


# -- dead letters ------------------------------------------------------------------------

def message(content: str, mid: str = "m1", inserted: float = NOW - 60) -> Any:
    return SimpleNamespace(id=mid, content=content, pop_receipt="p",
                           inserted_on=dt.datetime.fromtimestamp(inserted, dt.UTC))


def envelope(**over: Any) -> str:
    args: dict[str, Any] = {"kind": "twilio_permanent", "reason": "Twilio 21610",
                            "original": '{"id": "o-1", "type": "sms", "to": "+15551234567", '
                                        '"body": "x"}',
                            "queue_message_id": "q1", "job_key": "o-1", "twilio_code": 21610,
                            "dequeue_count": 1, "at": NOW - 3600}
    args.update(over)
    return deadletters.envelope(**args)


def test_letter_from_an_envelope() -> None:
    letter = letters.Letter.read("rejected", message(envelope()))
    assert (letter.kind, letter.reason, letter.twilio_code, letter.job_key, letter.at) == (
        "twilio_permanent", "Twilio 21610", 21610, "o-1", NOW - 3600)
    assert letter.original() == ('{"id": "o-1", "type": "sms", "to": "+15551234567", '
                                 '"body": "x"}', "")
    assert dl.row_of(letter, NOW) == ["1h", "rejected", "twilio_permanent", "21610", "o-1",
                                      "m1", "Twilio 21610"]


def test_the_hosts_own_poison_move_is_host_poison() -> None:
    job = base64.b64encode(b'{"id": "j-9", "type": "call", "to": "+15551234567", '
                           b'"say": "hi"}').decode()
    letter = letters.Letter.read("poison", message(job, inserted=NOW - 120))
    assert (letter.kind, letter.job_key, letter.twilio_code, letter.at) == (
        "host_poison", "j-9", None, NOW - 120)
    assert letter.original() == (job, "")
    assert letter.why_not() == ""
    assert letters.Letter.read("poison", message("garbage")).job_key is None


def test_originals_that_cannot_be_replayed_say_why() -> None:
    cut = letters.Letter.read("rejected", message(envelope(kind="invalid_job", original="x" * 70000,
                                                      job_key=None, twilio_code=None)))
    original, why = cut.original()
    assert original is None and why.startswith("its original (70000 bytes) was cut")
    binary = letters.Letter.read("rejected", message(envelope(original=b"\xff\x00")))
    assert binary.original() == (None, "its original is not UTF-8 text, so not a job")
    assert cut.why_not() == why and binary.why_not().startswith("its original is not UTF-8")


def test_selection_combines_options_with_and() -> None:
    letter = letters.Letter.read("rejected", message(envelope()))
    assert letters.Selection().matches(letter) and not letters.Selection().anything
    assert letters.Selection(kinds=frozenset({"twilio_permanent", "no_sender"})).matches(letter)
    assert not letters.Selection(kinds=frozenset({"twilio_permanent"}),
                            job_keys=frozenset({"other"})).matches(letter)
    assert letters.Selection(since=NOW - 7200).matches(letter)
    assert not letters.Selection(since=NOW - 60).matches(letter)
    assert letters.Selection(ids=frozenset({"m1"})).matches(letter)


# -- a job's row -------------------------------------------------------------------------

def test_render_shows_known_fields_first_and_new_fields_as_they_are() -> None:
    row = {"PartitionKey": "job", "RowKey": "order-7", "status": "rejected", "attempts": 2,
           "twilio_code": 21610, "last_error": "Twilio 21610: unsubscribed",
           "lease_until": NOW - 5, "first_message_id": "q1", "message_id": "q2",
           "updated_at": NOW - 90, "claimed_at": NOW - 100, "claim_id": "c-1",
           "check_since": 0.0, "trace": '[{"step": "reconcile"}]', "paused_until": NOW + 60}
    assert jobs.render("order-7", row, "twiliojobs", "Azurite", NOW) == "\n".join([
        "job order-7  (table twiliojobs, Azurite)",
        "  status               rejected: refused for good; its dead letter is in -rejected",
        "  Twilio refusal code  21610",
        "  attempts             2",
        "  last error           Twilio 21610: unsubscribed",
        "  claimed              2026-11-18 11:05:00Z (1m ago)",
        "  claim                c-1",
        "  check Twilio since   -",
        "  first queue message  q1",
        "  last queue message   q2",
        "  updated              2026-11-18 11:05:10Z (1m ago)",
        "  other fields",
        "  paused_until         2026-11-18 11:07:40Z (in 1m)",
        '  trace                [{"step": "reconcile"}]',
        "This id is burned: a job enqueued again with it is never sent. `python -m ops "
        "deadletters replay --job order-7` sends it again under a new id."])


def test_an_unknown_outcome_names_the_replay_that_looks_at_twilio_first() -> None:
    row = {"status": "unknown", "attempts": 3, "ambiguous": 1,
           "last_error": "timeout after the request was sent"}
    assert jobs.render("order-9", row, "twiliojobs", "Azurite", NOW) == "\n".join([
        "job order-9  (table twiliojobs, Azurite)",
        "  status               unknown: it may have reached Twilio (dead letter "
        "outcome_unknown)",
        "  attempts             3",
        "  last error           timeout after the request was sent",
        "  unclear attempts     1",
        "This id is burned: a job enqueued again with it is never sent. `python -m ops "
        "deadletters replay --job order-9` sends it again under a new id (the worker first "
        "looks at Twilio for it, and sends only if it is not there)."])
    # The command it names is one the tool takes, and it selects this job's dead letter.
    command = jobs.render("order-9", row, "t", "w", NOW).split("`")[1].split()
    parsed = ops_parser().parse_args(command[3:])
    assert (parsed.kind, parsed.job) == (None, ["order-9"])
    letter = letters.Letter.read("poison", message(envelope(kind="outcome_unknown",
                                                            job_key="order-9")))
    assert letters.selection(parsed, NOW).matches(letter)


def test_a_replayed_job_is_followed_to_its_new_id() -> None:
    row = {"status": "rejected", "twilio_code": 21610}
    sent = {"status": "sent", "sid": "SM" + "1" * 32}
    assert jobs.what_next("order-1", row, [("order-1.r1", sent)]) == [
        "Replayed as order-1.r1: sent as SM11111111111111111111111111111111: Twilio accepted "
        "it"]
    refused = {"status": "rejected"}
    assert jobs.what_next("order-1", row, [("order-1.r1", refused)]) == [
        "Replayed as order-1.r1: rejected: refused for good; its dead letter is in -rejected",
        "`python -m ops jobs show order-1.r1` for why; `python -m ops deadletters replay --job "
        "order-1.r1` sends it again under a new id."]
    assert jobs.what_next("order-1", sent, []) == [
        "Final: a job enqueued again with this id is not sent again (`enqueue` refuses it "
        "unless --force); a new id sends a new message."]
    assert jobs.what_next("order-1", {"status": "retrying"}, []) == []


def test_table_values_become_plain_json() -> None:
    from azure.data.tables import EdmType, EntityProperty

    assert ledger.plain(EntityProperty(2**40, EdmType.INT64)) == 2**40
    assert ledger.plain(b"\x01") == "AQ=="
    assert ledger.plain(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == "2026-01-01T00:00:00+00:00"


# -- errors and targets ------------------------------------------------------------------

def test_a_missing_role_is_one_line_naming_the_role() -> None:
    exc = HttpResponseError(message="This request is not authorized")
    exc.status_code, exc.error_code = 403, "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]
    assert target.explain(exc, "account st1") == (
        "account st1 refused the request (403 AuthorizationPermissionMismatch): your login "
        "lacks a data role; `jobs show` needs 'Storage Table Data Reader'; `deadletters` and "
        "`enqueue` 'Storage Queue Data Contributor', and `deadletters replay` 'Storage Table Data "
        "Contributor' (docs/operations.md)")
    assert target.explain(ValueError("x"), "Azurite") is None


def test_unreachable_storage_suggests_run_local_only_for_this_machine(tmp_path: Path) -> None:
    env = {"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")}
    refused = ServiceRequestError("Connection refused\nmore")
    local = target.Session(target.resolve(args(), env))
    assert local.explain(refused) == ("cannot reach Azurite (UseDevelopmentStorage=true) "
                                      "(Connection refused); is scripts/run-local running?")
    azurite = target.Session(target.resolve(args(connection_string=(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k;"
        "QueueEndpoint=http://127.0.0.1:21001/devstoreaccount1;")), env))
    assert azurite.explain(refused) == ("cannot reach the storage of --connection-string "
                                        "(Connection refused); is scripts/run-local running?")
    for remote in (args(account="st1"), args(connection_string=(
            "DefaultEndpointsProtocol=https;AccountName=st1;AccountKey=k;"
            "EndpointSuffix=core.windows.net"))):
        session = target.Session(target.resolve(remote, env))
        assert not session.target.local
        line = session.explain(refused)
        assert line is not None and line.endswith(
            "(Connection refused); check the account's name and your network"), line


def test_an_sdk_error_in_a_session_leaves_as_one_line(tmp_path: Path) -> None:
    import asyncio

    names = target.resolve(args(), {"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")}).names
    # A connection string: no login is asked for, nothing is sent.
    remote = target.Target("account st1", names, connection_string="AccountName=st1")

    async def fail() -> None:
        async with target.Session(remote):
            raise ServiceRequestError("Name or service not known")

    with pytest.raises(target.OpsError) as caught:
        asyncio.run(fail())
    assert str(caught.value) == ("cannot reach account st1 (Name or service not known); check "
                                 "the account's name and your network")
    assert caught.value.code == 1 and isinstance(caught.value.__cause__, ServiceRequestError)


def args(**over: Any) -> argparse.Namespace:
    values = {"connection_string": None, "account": None, "account_url": None,
              "outbound_queue": None, "table": None}
    values.update(over)
    return argparse.Namespace(**values)


def test_targets(tmp_path: Path) -> None:
    env = {"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"), "OUTBOUND_QUEUE_NAME": "jobs-q"}
    local = target.resolve(args(), env)
    assert (local.connection_string, local.where) == ("UseDevelopmentStorage=true",
                                                      "Azurite (UseDevelopmentStorage=true)")
    assert (local.names.rejected_queue_name, local.names.poison_queue_name,
            local.names.jobs_table_name) == ("jobs-q-rejected", "jobs-q-poison", "twiliojobs")
    account = target.resolve(args(account="st1", table="ledger"), env)
    assert (account.queue_url, account.table_url, account.connection_string,
            account.names.jobs_table_name) == (
        "https://st1.queue.core.windows.net", "https://st1.table.core.windows.net", None,
        "ledger")
    url = target.resolve(args(account_url="https://st2.table.core.windows.net/"), env)
    assert (url.queue_url, url.table_url) == ("https://st2.queue.core.windows.net",
                                              "https://st2.table.core.windows.net")
    identity = target.resolve(args(), {**env, "AzureWebJobsStorage__accountName": "st3"})
    assert (identity.where, identity.queue_url, identity.table_url) == (
        "account st3", "https://st3.queue.core.windows.net", "https://st3.table.core.windows.net")
    with pytest.raises(target.OpsError, match=r"--account-url must be an https URL .* For "
                                              r"Azurite, use --connection-string"):
        target.resolve(args(account_url="http://127.0.0.1:10001/devstoreaccount1"), env)


def test_enqueue_no_validate_sends_text_as_it_is() -> None:
    ns = argparse.Namespace(job="hello", sms=None, call=None, id=None, no_validate=True)
    assert enqueue.message_text(ns) == ("hello", None)
    with pytest.raises(target.OpsError, match="the job is not JSON .*--no-validate sends it"):
        enqueue.message_text(argparse.Namespace(**{**vars(ns), "no_validate": False}))
    with pytest.raises(target.OpsError, match="--id needs a JSON job"):
        enqueue.message_text(argparse.Namespace(**{**vars(ns), "id": "x"}))
    bad = argparse.Namespace(job='{"type": "sms", "to": "555", "body": "x"}', sms=None,
                             call=None, id=None, no_validate=False)
    with pytest.raises(target.OpsError, match="not enqueued: field 'to'"):
        enqueue.message_text(bad)
    sms = argparse.Namespace(job=None, sms=["+15551234567", "hi"], call=None, id="j-1",
                             no_validate=False)
    assert enqueue.message_text(sms) == (
        '{"type": "sms", "to": "+15551234567", "body": "hi", "id": "j-1"}',
        {"type": "sms", "to": "+15551234567", "body": "hi", "id": "j-1"})


# -- signing -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["webhook", "--base", "https://func-x.azurewebsites.net", "/api/sms", "Body=hi"],
    ["sign", "https://func-x.azurewebsites.net/api/sms", "Body=hi"]])
def test_the_local_token_signs_only_for_this_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: list[str]) -> None:
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(tmp_path / "none.json"))
    for name in ("TWILIO_AUTH_TOKEN", "WEBHOOK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert ops_main(argv) == 2  # refused before anything is sent
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"python -m ops {argv[0]}: func-x.azurewebsites.net is "
                                      "not this machine and TWILIO_AUTH_TOKEN is the local "
                                      "development one: set TWILIO_AUTH_TOKEN to the Twilio "
                                      "account's auth token\n")


def test_a_set_token_signs_for_anywhere_and_the_local_one_for_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(tmp_path / "none.json"))
    remote = "https://func-x.azurewebsites.net/api/sms"
    token = "f" * 32
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", token)
    assert ops_main(["sign", remote, "Body=hi"]) == 0
    assert capsys.readouterr().out == webhook.signature(remote, [("Body", "hi")], token) + "\n"
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    for local in ("http://127.0.0.1:7071/api/sms", "http://localhost:7071/api/sms"):
        assert ops_main(["sign", local, "Body=hi"]) == 0
        assert capsys.readouterr().out == webhook.signature(
            local, [("Body", "hi")], DEV_DEFAULTS["TWILIO_AUTH_TOKEN"]) + "\n"


# -- local settings ----------------------------------------------------------------------

def test_local_defaults_demonstrate_the_readme(tmp_path: Path) -> None:
    values = load_settings(env={"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")})
    s = Settings.from_env(values)
    assert s.sms_keywords == {"HOURS": "We are open 9 to 5.", "ADDRESS": "1 Main St"}
    assert s.call_flow is not None and s.call_flow.doc == LOCAL_CALL_FLOW
    assert s.from_number == "+15005550006" and s.api_base_url == "http://127.0.0.1:4010"


def test_a_settings_file_is_read_under_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"Values": {"SMS_AUTO_REPLY": "file", "VOICE_GREETING": "file"}}))
    values = load_settings(env={"LOCAL_SETTINGS_FILE": str(path), "VOICE_GREETING": "env"})
    assert (values["SMS_AUTO_REPLY"], values["VOICE_GREETING"]) == ("file", "env")
    path.write_text("[]")
    with pytest.raises(ValueError, match='is not a local.settings.json with a "Values" object'):
        file_values(path)


def test_the_settings_example_matches_the_local_defaults() -> None:
    example = file_values(ROOT / "local.settings.json.example")
    assert {k: example[k] for k in DEV_DEFAULTS} == DEV_DEFAULTS


def test_run_local_reads_azurites_ports_from_the_connection_string() -> None:
    assert run_local.azurite_ports("UseDevelopmentStorage=true") == (10000, 10001, 10002)
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k;"
            "QueueEndpoint=http://127.0.0.1:21001/devstoreaccount1;"
            "TableEndpoint=http://localhost:21002/devstoreaccount1;")
    assert run_local.azurite_ports(conn) == (0, 21001, 21002)
    assert run_local.azurite_ports("DefaultEndpointsProtocol=https;AccountName=st1;"
                                   "AccountKey=k;EndpointSuffix=core.windows.net") is None


def test_run_local_starts_func_with_this_venvs_python(tmp_path: Path) -> None:
    values = load_settings(env={"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"),
                                "PATH": "/usr/bin:/bin"})
    p = run_local.plan(values, 7071)
    assert run_local.app_command(p) == (
        "dev host", [sys.executable, "-m", "devhost", "--port", "7071"], p.env)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "func").write_text("#!/bin/sh\n")
    (bin_dir / "func").chmod(0o755)
    p.env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    name, cmd, env = run_local.app_command(p)
    assert (name, cmd) == ("func start", [str(bin_dir / "func"), "start", "--port", "7071"])
    assert env == {**p.env, "PATH": f"{Path(sys.executable).parent}:{bin_dir}:/usr/bin:/bin",
                   "languageWorkers__python__defaultExecutablePath": sys.executable}


def test_run_local_refuses_bad_settings_before_anything(tmp_path: Path) -> None:
    values = load_settings(env={"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"),
                                "TWILIO_FROM_NUMBER": "abc"})
    with pytest.raises(run_local.StartError, match="settings: TWILIO_FROM_NUMBER must be"):
        run_local.plan(values, 7071)


# -- the Twilio API front ----------------------------------------------------------------

def test_front_rewrites_only_the_specs_array_fields() -> None:
    ops = twilio_front.operations(json.loads(
        (ROOT / "node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json")
        .read_text()))
    messages = next(op for op in ops if op.pattern.match(
        "/2010-04-01/Accounts/AC123/Messages.json"))
    assert set(messages.arrays) == {"MediaUrl", "PersistentAction"}
    body, problems = twilio_front.rewrite(
        "To=%2B15551234567&MediaUrl=https%3A%2F%2Fa.example%2F1.png&Body=a+b"
        "&MediaUrl=https%3A%2F%2Fa.example%2F2.png", messages.arrays)
    assert (body, problems) == (
        "To=%2B15551234567&MediaUrl%5B0%5D=https%3A%2F%2Fa.example%2F1.png&Body=a+b"
        "&MediaUrl%5B1%5D=https%3A%2F%2Fa.example%2F2.png", [])
    _, problems = twilio_front.rewrite("To=%2B1&MediaUrl=not+a+url", messages.arrays)
    assert problems == [{"location": ["body", "MediaUrl", "0"], "severity": "Error",
                         "code": "format",
                         "message": "Request body property MediaUrl 'not a url' is not a 'uri'"}]


# -- the settings a target's app reads ---------------------------------------------------

def test_an_azd_environment_is_read_as_azd_writes_it(tmp_path: Path) -> None:
    from ops import azdenv

    assert azdenv.find(tmp_path, {}) is None
    (tmp_path / ".azure" / "dev").mkdir(parents=True)
    (tmp_path / ".azure" / "config.json").write_text('{"version": 1, "defaultEnvironment": "dev"}')
    (tmp_path / ".azure" / "dev" / ".env").write_text(
        'AZURE_ENV_NAME="dev"\nFUNCTION_APP_HOST="func-x.azurewebsites.net"\n'
        "# a comment\nJOB_RETENTION_DAYS=7\nQUOTED=\"a \\\"b\\\"\\nc\"\n"
        'TWILIO_AUTH_TOKEN="akvs://sub/vault/twilio-auth-token"\n')
    found = azdenv.find(tmp_path, {})
    assert found is not None and found.label == "azd env dev"
    assert found.values == {"AZURE_ENV_NAME": "dev", "FUNCTION_APP_HOST": "func-x.azurewebsites.net",
                            "JOB_RETENTION_DAYS": "7", "QUOTED": 'a "b"\nc'}
    assert azdenv.find(tmp_path, {"AZURE_ENV_NAME": "prod"}) is None  # no such environment


def test_each_setting_says_where_it_comes_from(tmp_path: Path) -> None:
    from ops import appsettings

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"Values": {"JOB_RETENTION_DAYS": "10"}}))
    app = appsettings.local({"LOCAL_SETTINGS_FILE": str(path),
                             "WEBHOOK_EFFECT_RETENTION_HOURS": "12"}, tmp_path)
    assert [app.source(n) for n in ("WEBHOOK_EFFECT_RETENTION_HOURS", "JOB_RETENTION_DAYS",
                                    "TWILIO_FROM_NUMBER", "THROTTLE_DEADLINE_SECONDS")] == [
        "environment", "s.json", "local defaults", "default"]
    s = app.settings()
    assert (s.job_retention_days, s.webhook_effect_retention_hours, s.from_number) == (
        10.0, 12.0, "+15005550006")
    bad = appsettings.local({"LOCAL_SETTINGS_FILE": str(path), "JOB_RETENTION_DAYS": "0"},
                            tmp_path)
    with pytest.raises(target.OpsError, match="the settings of the local app do not load: "
                                              "JOB_RETENTION_DAYS must be at least 1"):
        bad.settings()
    # A deployment's: its azd environment, when this checkout has the one for its account.
    (tmp_path / ".azure" / "dev").mkdir(parents=True)
    (tmp_path / ".azure" / "dev" / ".env").write_text(
        'AZURE_STORAGE_ACCOUNT_NAME="st1"\nKEY_VAULT_URL="https://kv1.vault.azure.net"\n'
        'JOB_RETENTION_DAYS="7"\n')
    azd = {"AZURE_ENV_NAME": "dev", "LOCAL_SETTINGS_FILE": str(path)}
    found = appsettings.for_target(target.resolve(args(account="st1"), azd), azd, tmp_path)
    assert found is not None and found.about == "the deployment of azd env dev"
    assert (found.source("JOB_RETENTION_DAYS"), found.settings().job_retention_days) == (
        "azd env dev", 7.0)
    assert appsettings.for_target(target.resolve(args(account="st2"), azd), azd,
                                  tmp_path) is None  # another deployment


def test_a_webhook_url_written_with_spaces_is_sent_and_signed_as_a_browser_writes_it() -> None:
    from ops import webhook
    url = webhook.destination("/api/twiml/message?Message=Hello world&Voice=Polly.Joanna",
                              None, None)
    assert url == "http://127.0.0.1:7071/api/twiml/message?Message=Hello%20world&Voice=Polly.Joanna"
    kept = webhook.destination("/api/twiml/forward?PhoneNumber=%2B14155550122", None, None)
    assert kept.endswith("PhoneNumber=%2B14155550122")  # an escape is not escaped again
