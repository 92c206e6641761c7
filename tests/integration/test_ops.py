"""`python -m ops` against Azurite: jobs show, deadletters list and replay, enqueue; the same
commands with an Azure login (DefaultAzureCredential) against Azurite in OAuth mode; and no
login: one line within seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost import services
from ops import text
from ops.__main__ import main as ops_main
from ops.__main__ import parser as ops_parser
from shared.ledger import job_partition
from tests.doubles import ManagedIdentityDouble, Recorded
from tests.integration.ops_helpers import (
    JOB,
    ROOT,
    letter,
    queue,
    row,
    run,
    table,
    texts,
    tool_env,
)


@pytest.fixture
def env(storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> dict[str, str]:
    return tool_env(storage_env, monkeypatch, tmp_path)


# -- jobs show ---------------------------------------------------------------------------

def test_jobs_show_readable_json_and_not_found(env: dict[str, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    row(env, "order-7", status="sent", sid="SM" + "1" * 32, twilio_status="delivered",
        attempts=1, last_error="", claim_id="c-9", note="added later")
    code, out, err = run(capsys, "jobs", "show", "order-7")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"job order-7  (table {env['JOBS_TABLE_NAME']}, Azurite on ")
    assert lines[1:5] == [
        "  status               sent: Twilio accepted it",
        "  Twilio SID           SM11111111111111111111111111111111",
        "  Twilio status        delivered",
        "  attempts             1"]
    assert "  claim                c-9" in lines  # a known field, under its label
    assert lines[-3:] == ["  other fields", "  note                 added later",
                          "Final: a job enqueued again with this id is not sent again "
                          "(`enqueue` refuses it unless --force); a new id sends a new message."]

    code, out, _ = run(capsys, "jobs", "show", "order-7", "--json")
    doc = json.loads(out)
    assert code == 0 and doc.pop("updated_at") > 0
    assert doc == {"PartitionKey": job_partition("order-7"), "RowKey": "order-7", "status": "sent",
                   "sid": "SM" + "1" * 32, "twilio_status": "delivered", "attempts": 1,
                   "last_error": "", "claim_id": "c-9", "note": "added later"}

    code, out, err = run(capsys, "jobs", "show", "order-8")
    assert (code, out) == (3, "")
    assert err.startswith(f"python -m ops jobs: no job 'order-8' in table "
                          f"{env['JOBS_TABLE_NAME']} nor among the dead letters (looked in "
                          f"{env['OUTBOUND_QUEUE_NAME']}-rejected and "
                          f"{env['OUTBOUND_QUEUE_NAME']}-poison on Azurite on ")
    assert err.count("\n") == 1


def test_jobs_show_when_no_table_exists_yet(env: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "jobs", "show", "x", "--table", "nosuchtable")
    assert code == 3
    assert "table nosuchtable does not exist" in err and err.count("\n") == 1


# -- deadletters list --------------------------------------------------------------------

def seed_mixed(env: dict[str, str]) -> None:
    now = time.time()
    queue(env, "-rejected").send_message(letter("twilio_permanent", twilio_code=21610,
                                                at=now - 7200))
    queue(env, "-rejected").send_message(letter("invalid_job", None, original="nope",
                                                at=now - 60))
    queue(env, "-poison").send_message(letter("retries_exhausted", {**JOB, "id": "r-1"},
                                              at=now - 30))
    queue(env, "-poison").send_message(json.dumps({**JOB, "id": "crash-1"}))  # the host's move


def test_list_is_a_table_a_peek_and_filters(env: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    seed_mixed(env)
    code, out, err = run(capsys, "deadletters", "list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["AGE", "QUEUE", "KIND", "CODE", "JOB", "KEY", "MESSAGE", "ID",
                              "REASON"]
    cells = [r.split()[:5] for r in rows]
    assert cells == [["2h", "rejected", "twilio_permanent", "21610", "order-7"],
                     ["1m", "rejected", "invalid_job", "-", "-"],
                     [cells[2][0], "poison", "retries_exhausted", "-", "r-1"],
                     [cells[3][0], "poison", "host_poison", "-", "crash-1"]]
    # A peek: every message is still there, never dequeued.
    assert [m.dequeue_count for m in queue(env, "-rejected").peek_messages(32)] == [0, 0]

    assert [r.split()[2] for r in run(capsys, "deadletters", "list", "--queue", "poison")[1]
            .splitlines()[1:]] == ["retries_exhausted", "host_poison"]
    assert [r.split()[2] for r in run(capsys, "deadletters", "list", "--since", "90m")[1]
            .splitlines()[1:]] == ["invalid_job", "retries_exhausted", "host_poison"]
    assert run(capsys, "deadletters", "list", "--kind", "no_sender")[1] == \
        "No dead letters match.\n"

    code, out, _ = run(capsys, "deadletters", "list", "--json", "--kind", "twilio_permanent")
    [doc] = [json.loads(line) for line in out.splitlines()]
    assert doc.pop("message_id") and doc.pop("at") and doc.pop("age_seconds") >= 7200
    assert doc == {"queue": "rejected", "queue_name": env["OUTBOUND_QUEUE_NAME"] + "-rejected",
                   "kind": "twilio_permanent", "reason": "reason for twilio_permanent",
                   "twilio_code": 21610, "job_key": "order-7", "replayable": True,
                   "why_not": ""}


def test_list_says_when_it_shows_32_and_all_reads_every_one(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rejected = queue(env, "-rejected")
    for i in range(40):
        rejected.send_message(letter("no_sender", {**JOB, "id": f"n-{i}"}))
    code, out, err = run(capsys, "deadletters", "list")
    assert code == 0 and len(out.splitlines()) == 1 + 32
    assert "showing the first 32 of about 40" in err and "--all reads every one" in err
    code, out, _ = run(capsys, "deadletters", "list", "--all", "--queue", "rejected")
    assert code == 0 and len(out.splitlines()) == 1 + 40
    # --all put every message back: all 40 can be received right away.
    got = list(rejected.receive_messages(max_messages=32, visibility_timeout=1))
    got += list(rejected.receive_messages(max_messages=32, visibility_timeout=1))
    assert len(got) == 40


# -- deadletters replay ------------------------------------------------------------------

def test_a_burned_id_is_replayed_under_a_new_one_once(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    row(env, "order-7", status="rejected", twilio_code=21610)
    queue(env, "-rejected").send_message(letter(twilio_code=21610))
    code, out, err = run(capsys, "deadletters", "replay", "--job", "order-7")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "replayed     rejected twilio_permanent  order-7 -> order-7.r1, a new id (order-7 is "
        "rejected); will fail the same way again: Twilio refused this job for good (error "
        "21610: the recipient opted out (it goes through once they text START)) and it goes "
        "again unchanged, to +*******4567",
        "Replayed 1 (1 under a new id); already sent or replayed 0 (dead letter removed); "
        "skipped 0; failed 0; not selected 0 (left as they were)."]
    assert [json.loads(t) for t in texts(queue(env))] == [{**JOB, "id": "order-7.r1"}]
    assert texts(queue(env, "-rejected")) == []


def test_a_replay_cut_short_sends_nothing_twice(env: dict[str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The enqueue happened and was sent, then the tool stopped before deleting the letter.
    row(env, "order-7", status="rejected")
    row(env, "order-7.r1", status="sent", sid="SM" + "2" * 32)
    queue(env, "-rejected").send_message(letter())
    code, out, _ = run(capsys, "deadletters", "replay", "--all")
    assert code == 0
    assert out.splitlines()[0] == ("dropped      rejected twilio_permanent  order-7 was "
                                   "replayed already as order-7.r1 (sent)")
    assert texts(queue(env)) == [] and texts(queue(env, "-rejected")) == []


def test_replay_keeps_the_id_when_the_ledger_allows_and_drops_what_was_sent(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    queue(env, "-rejected").send_message(letter("no_sender", {**JOB, "id": "n-1"}))
    row(env, "s-1", status="sent", sid="SM" + "3" * 32)
    queue(env, "-poison").send_message(json.dumps({**JOB, "id": "s-1"}))
    queue(env, "-poison").send_message(base64.b64encode(json.dumps(
        {"type": "call", "to": "+15551234567", "say": "hi"}).encode()).decode())
    code, out, _ = run(capsys, "deadletters", "replay", "--all")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("replayed     rejected no_sender         n-1 under the same key (no "
                        "row: it was never claimed, so never sent)")
    assert lines[1] == ("dropped      poison   host_poison       s-1 was sent already (SID "
                        "SM33333333333333333333333333333333): nothing to send")
    assert lines[2].startswith("replayed     poison   host_poison       replay-")
    assert ", a new key (the job has no id and the host moved it as it was: the key it had " \
           "cannot be known); will look at Twilio for a call to +*******4567 since " in lines[2]
    sent = [json.loads(t) for t in texts(queue(env))]
    assert sent[0] == {**JOB, "id": "n-1"}
    assert sent[1]["id"] == lines[2].split()[3].rstrip(",") and sent[1]["say"] == "hi"
    assert texts(queue(env, "-rejected")) == [] and texts(queue(env, "-poison")) == []


def test_what_cannot_be_replayed_is_said_and_kept(env: dict[str, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rejected = queue(env, "-rejected")
    rejected.send_message(letter("invalid_job", None, original="x" * 70000))
    rejected.send_message(letter("invalid_job", None, original='{"type": "fax"}'))
    code, out, _ = run(capsys, "deadletters", "replay", "--kind", "invalid_job")
    assert code == 0
    first, second, summary = out.splitlines()
    assert "cannot be replayed: its original (70000 bytes) was cut" in first
    assert "still not a valid job (missing required field 'to';" in second
    assert summary.startswith("Replayed 0 (0 under a new id); already sent or replayed 0 "
                              "(dead letter removed); skipped 2; failed 0;")
    assert len(texts(rejected)) == 2 and texts(queue(env)) == []


def test_a_failed_enqueue_keeps_the_dead_letter(env: dict[str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    queue(env, "-rejected").send_message(letter("no_sender", {**JOB, "id": "n-2"}))
    queue(env).delete_queue()  # the enqueue will fail: no outbound queue
    code, out, _ = run(capsys, "deadletters", "replay", "--all")
    assert code == 1
    line, summary = out.splitlines()
    assert line.startswith("failed       rejected no_sender         n-2 under the same key "
                           "(no row: it was never claimed, so never sent): not enqueued (")
    assert "404 QueueNotFound" in line and line.endswith("; kept")
    assert summary.startswith("Replayed 0 (0 under a new id); already sent or replayed 0 "
                              "(dead letter removed); skipped 0; failed 1;")
    assert len(texts(queue(env, "-rejected"))) == 1


def test_outcome_unknown_goes_under_a_new_id_whose_row_says_to_look_at_twilio(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    claimed = time.time() - 3000
    row(env, "order-7", status="unknown", claimed_at=claimed, check_since=claimed - 60)
    queue(env, "-poison").send_message(letter("outcome_unknown"))
    code, out, _ = run(capsys, "deadletters", "replay", "--all", "--dry-run")
    look = text.when(claimed - 60)
    assert code == 0 and out.splitlines()[0] == (
        "would replay poison   outcome_unknown   order-7 -> order-7.r1, a new id (order-7 is "
        f"unknown); will look at Twilio for a message to +*******4567 since {look} before "
        "sending")
    assert texts(queue(env)) == []
    with pytest.raises(ResourceNotFoundError):  # a dry run writes nothing
        table(env).get_entity(job_partition("order-7.r1"), "order-7.r1")

    # What `jobs show` says to run replays it, under the new id, its row written first.
    code, out, _ = run(capsys, "jobs", "show", "order-7")
    hint = out.splitlines()[-1]
    assert code == 0 and hint.startswith("This id is burned") and "looks at Twilio" in hint
    command = shlex.split(hint.split("`")[1])
    assert command[:3] == ["python", "-m", "ops"]
    code, out, _ = run(capsys, *command[3:])
    assert code == 0 and out.splitlines()[0].startswith(
        "replayed     poison   outcome_unknown   order-7 -> order-7.r1, a new id")
    assert [json.loads(t)["id"] for t in texts(queue(env))] == ["order-7.r1"]
    seeded = table(env).get_entity(job_partition("order-7.r1"), "order-7.r1")
    assert {k: seeded[k] for k in ("status", "check_since", "attempts")} == {
        "status": "retrying", "check_since": claimed - 60, "attempts": 0}
    assert texts(queue(env, "-poison")) == []


def test_dry_run_changes_nothing(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    seed_mixed(env)
    row(env, "order-7", status="rejected")
    before = {s: [(m.id, m.dequeue_count) for m in queue(env, s).peek_messages(32)]
              for s in ("-rejected", "-poison")}
    code, out, _ = run(capsys, "deadletters", "replay", "--all", "--dry-run")
    assert code == 0
    assert "would replay rejected twilio_permanent  order-7 -> order-7.r1, a new id" in out
    assert out.splitlines()[-1].endswith("Dry run: nothing was changed.")
    after = {s: [(m.id, m.dequeue_count) for m in queue(env, s).peek_messages(32)]
             for s in ("-rejected", "-poison")}
    assert after == before and texts(queue(env)) == []


def test_replay_needs_a_selection(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "deadletters", "replay")
    assert code == 2 and "say what to replay" in err


def test_a_long_replay_shows_progress_and_a_summary(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    n = 300

    async def seed() -> None:
        from azure.storage.queue.aio import QueueClient as AsyncQueue

        async with AsyncQueue.from_connection_string(env["AzureWebJobsStorage"],
                                                     env["OUTBOUND_QUEUE_NAME"] + "-poison") as q:
            await q.create_queue()
            for start in range(0, n, 50):
                await asyncio.gather(*(q.send_message(letter(
                    "retries_exhausted", {**JOB, "id": f"bulk-{i}"}))
                    for i in range(start, min(n, start + 50))))

    asyncio.run(seed())
    started = time.monotonic()
    code, out, err = run(capsys, "deadletters", "replay", "--queue", "poison", "--all")
    elapsed = time.monotonic() - started
    assert code == 0, out[-500:]
    assert re.search(r"^\.\.\. \d+ dead letters read: \d+ replayed, 0 already done, 0 skipped, "
                     r"0 failed$", err, re.M), err
    assert out.splitlines()[-1] == (
        f"Replayed {n} (0 under a new id); already sent or replayed 0 (dead letter removed); "
        "skipped 0; failed 0; not selected 0 (left as they were).")
    assert queue(env).get_queue_properties().approximate_message_count == n
    assert queue(env, "-poison").get_queue_properties().approximate_message_count == 0
    print(f"replayed {n} dead letters in {elapsed:.1f} s")


# -- enqueue -----------------------------------------------------------------------------

def test_enqueue_sends_what_it_says(env: dict[str, str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "enqueue", "--no-validate", "hello")
    assert code == 0 and out.startswith("enqueued a message that is not JSON as message ")
    code, out, _ = run(capsys, "enqueue", "--sms", "+15551234567", "hi", "--id", "e-1",
                       "--base64")
    assert code == 0 and out.startswith("enqueued job e-1 as message ")
    code, out, _ = run(capsys, "enqueue", "--call", "+15551234567", "hi")
    message_id = out.split(" as message ")[1].split()[0]
    assert out.startswith(f"enqueued job msg-{message_id} as message {message_id} on "
                          f"{env['OUTBOUND_QUEUE_NAME']} (Azurite on ")
    assert texts(queue(env)) == [
        "hello", base64.b64encode(b'{"type": "sms", "to": "+15551234567", "body": "hi", '
                                  b'"id": "e-1"}').decode(),
        '{"type": "call", "to": "+15551234567", "say": "hi"}']
    code, _, err = run(capsys, "enqueue", "--account-url", "http://127.0.0.1:1/x", "--sms",
                       "+15551234567", "hi")
    assert code == 2 and err.count("\n") == 1 and "must be an https URL" in err


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    def paths(p: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        yield prefix
        for action in p._actions:
            for name, sub in getattr(action, "choices", None).items() \
                    if hasattr(action, "add_parser") else ():
                yield from paths(sub, (*prefix, name))

    seen = list(paths(ops_parser()))
    assert {" ".join(s) for s in seen} >= {"", "jobs", "jobs show", "deadletters",
                                           "deadletters list", "deadletters replay",
                                           "enqueue", "webhook", "sign"}
    for path in seen:
        with pytest.raises(SystemExit) as done:
            ops_main([*path, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(
            "usage: python -m ops" + "".join(f" {p}" for p in path))


# -- with an Azure login, and without ----------------------------------------------------

def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No Azure login anywhere: no az/azd/pwsh on PATH, an empty HOME, no AZURE_* or
    identity endpoint variables."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(
        ("AZURE_", "IDENTITY_", "MSI_", "AzureWebJobsStorage", "IMDS_"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**keep, "HOME": str(home), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"), **extra}


def ops_process(env: dict[str, str], *argv: str, timeout: float = 60) -> tuple[int, str, str, float]:
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "ops", *argv], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout, res.stderr, time.monotonic() - started


@pytest.mark.parametrize("argv", [["jobs", "show", "order-7"], ["deadletters", "list"],
                                  ["enqueue", "--sms", "+15551234567", "hi"]])
def test_no_azure_login_is_one_line_within_seconds(tmp_path: Path, argv: list[str]) -> None:
    # A real account's name: the login is asked first, so nothing is sent anywhere.
    code, out, err, seconds = ops_process(clean_env(tmp_path), *argv, "--account", "stnologin")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err
    assert err.startswith(f"python -m ops {argv[0]}: no Azure login for account stnologin: "
                          "run `az login`")
    assert seconds < 10, seconds


def jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


class StorageTokenDouble(ManagedIdentityDouble):
    """An App Service identity endpoint whose tokens Azurite's OAuth mode accepts (it checks
    the claims, not the signature)."""

    def handle(self, req: Recorded, handler: Any) -> Any:
        status, headers, body = super().handle(req, handler)
        if status == 200:
            doc = json.loads(body)
            now = int(time.time())
            doc["access_token"] = jwt({"aud": "https://storage.azure.com",
                                       "iss": "https://sts.windows.net/0000/", "iat": now,
                                       "nbf": now - 60, "exp": now + 3600})
            body = json.dumps(doc).encode()
        return status, headers, body


@pytest.fixture
def oauth_azurite(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    svc = services.start_azurite(tmp_path / "azurite", extra_args=[
        "--oauth", "basic", "--cert", paths["cert"], "--key", paths["key"]])
    try:
        yield {"ports": svc.ports, **paths}
    finally:
        svc.stop()


def test_commands_with_an_azure_login(oauth_azurite: dict[str, Any], tmp_path: Path) -> None:
    ports, account = oauth_azurite["ports"], services.AZURITE_ACCOUNT
    queue_uri = f"https://127.0.0.1:{ports['queue']}/{account}"
    table_uri = f"https://127.0.0.1:{ports['table']}/{account}"
    seed = (f"DefaultEndpointsProtocol=https;AccountName={account};"
            f"AccountKey={services.AZURITE_KEY};QueueEndpoint={queue_uri};"
            f"TableEndpoint={table_uri};")
    verify = {"connection_verify": oauth_azurite["ca"]}
    tc = TableClient.from_connection_string(seed, "twiliojobs", **verify)
    tc.create_table()
    tc.upsert_entity({"PartitionKey": "job", "RowKey": "order-7", "status": "sent",
                      "sid": "SM" + "4" * 32})
    rejected = QueueClient.from_connection_string(seed, "twilio-outbound-rejected", **verify)
    rejected.create_queue()
    rejected.send_message(letter("no_sender", {**JOB, "id": "n-9"}))
    QueueClient.from_connection_string(seed, "twilio-outbound", **verify).create_queue()

    with StorageTokenDouble() as mi:
        env = clean_env(tmp_path, IDENTITY_ENDPOINT=f"{mi.url}/msi/token",
                        IDENTITY_HEADER=mi.header, SSL_CERT_FILE=oauth_azurite["ca"],
                        AzureWebJobsStorage__queueServiceUri=queue_uri,
                        AzureWebJobsStorage__tableServiceUri=table_uri)
        code, out, err, _ = ops_process(env, "jobs", "show", "order-7", "--json")
        assert (code, err) == (0, ""), err
        assert json.loads(out)["sid"] == "SM" + "4" * 32
        code, out, err, _ = ops_process(env, "deadletters", "replay", "--all")
        assert (code, err) == (0, ""), err
        assert out.splitlines()[0] == ("replayed     rejected no_sender         n-9 under the "
                                       "same key (no row: it was never claimed, so never sent)")
        code, out, err, _ = ops_process(env, "enqueue", "--sms", "+15551234567", "hi")
        assert code == 0 and out.endswith(f"on twilio-outbound (127.0.0.1:{ports['queue']})\n")
        tokens = [r for r in mi.requests if r.status == 200]
        assert len(tokens) == 3  # one login per command
    outbound = QueueClient.from_connection_string(seed, "twilio-outbound", **verify)
    assert [json.loads(m.content).get("id") for m in outbound.peek_messages(32)] == ["n-9", None]


def test_dry_run_says_when_a_replay_will_fail_the_same_way_again(
        env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    queue(env, "-rejected").send_message(letter("no_sender", {**JOB, "id": "n-3"}))
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "")  # still unset, as when it was refused
    code, out, _ = run(capsys, "deadletters", "replay", "--all", "--dry-run")
    assert code == 0 and out.splitlines()[0] == (
        "would replay rejected no_sender         n-3 under the same key (no row: it was never "
        "claimed, so never sent); will fail the same way again: the job has no 'from' or "
        "'messaging_service_sid', and TWILIO_FROM_NUMBER is not set (nor "
        "TWILIO_MESSAGING_SERVICE_SID) (in the settings of the local app)")
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "+15005550006")  # fixed: it will go
    code, out, _ = run(capsys, "deadletters", "replay", "--all", "--dry-run")
    assert code == 0 and out.splitlines()[0] == (
        "would replay rejected no_sender         n-3 under the same key (no row: it was never "
        "claimed, so never sent)")
