"""`python -m ops` at its edges, on Azurite and in real processes: dead letters holding
anything, one dead letter shown and deleted, ids that are not there (exit 3), a refused job
found by its own id, a final id enqueued again, output into a closed pipe, storage that is
not running, a Python without the packages, and webhooks signed for where they go
(issues 19 and 21)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from devhost import services
from shared import deadletters
from tests.doubles import LoopbackServer, Recorded
from tests.integration.ops_helpers import JOB, ROOT, letter, queue, row, run, tool_env
from tests.unit.test_ops_letters import NASTY

VALID = json.dumps({"id": "ok-1", "type": "sms", "to": "+15551234567", "body": "fine"})


@pytest.fixture
def env(storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> dict[str, str]:
    return tool_env(storage_env, monkeypatch, tmp_path)


def ops(env: dict[str, str], *argv: str, python: list[str] | None = None,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(python or [sys.executable]), "-m", "ops", *argv], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          input=stdin, timeout=120)


# -- any content -------------------------------------------------------------------------

def test_list_show_and_replay_read_any_dead_letter(env: dict[str, str]) -> None:
    poison = queue(env, "-poison")
    # What a queue message can hold (the service takes XML text: no lone surrogate as a
    # character, at most 64 KiB): the host's moves and envelopes gone wrong alike. The last
    # of NASTY is an envelope of a valid job.
    nasty = [c for c in NASTY if len(c) < 60_000 and c != "\ud800"] + ["x" * 60_000]
    ids = [poison.send_message(c).id for c in nasty]
    valid_envelope = ids[nasty.index(NASTY[-1])]
    poison.send_message(VALID)

    listed = ops(env, "deadletters", "list", "--queue", "poison")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == len(nasty) + 1
    assert sum("host_poison" in r and "cannot be replayed: " in r for r in rows) == \
        len(nasty) - 2  # every host move but the valid job; the 2 envelopes say their reason
    as_json = [json.loads(line) for line in ops(env, "deadletters", "list", "--json")
               .stdout.splitlines()]
    assert sorted(d["message_id"] for d in as_json if d["replayable"]) == sorted(
        [valid_envelope, next(d["message_id"] for d in as_json if d["job_key"] == "ok-1")])
    for message_id, content in zip(ids, nasty, strict=True):
        shown = ops(env, "deadletters", "show", message_id)
        assert shown.returncode == 0 and shown.stderr == "", shown.stderr
        assert shown.stdout.startswith(f"dead letter {message_id}  ")
        assert ("\n  replay           no: " in shown.stdout) == (message_id != valid_envelope)
        assert json.loads(ops(env, "deadletters", "show", message_id, "--json").stdout)[
            "message_id"] == message_id
        assert ops(env, "deadletters", "show", message_id, "--raw").stdout == content + "\n"

    for argv in (["--dry-run"], []):
        done = ops(env, "deadletters", "replay", "--all", *argv)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert sum(line.startswith("skipped ") for line in done.stdout.splitlines()) == \
            len(nasty) - 1
    assert sorted(json.loads(m.content)["id"] for m in queue(env).peek_messages(32)) == [
        "ok-1", f"replay-{valid_envelope}"]
    assert sorted(m.id for m in poison.peek_messages(32)) == sorted(
        i for i in ids if i != valid_envelope)  # the others are kept


# -- show and delete ---------------------------------------------------------------------

def test_show_gives_the_envelope_and_the_original(env: dict[str, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    sent = queue(env, "-rejected").send_message(letter(
        "no_sender", JOB, original=base64.b64encode(json.dumps(JOB).encode()).decode(),
        at=time.time() - 120))
    code, out, err = run(capsys, "deadletters", "show", sent.id)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"dead letter {sent.id}  ({env['OUTBOUND_QUEUE_NAME']}-rejected, "
        f"Azurite on {env['AzureWebJobsStorage'].split('QueueEndpoint=http://')[1].split('/')[0]})",
        "  kind             no_sender",
        "  reason           reason for no_sender",
        "  Twilio code      -",
        "  job key          order-7",
        out.splitlines()[5],
        f"  replay           python -m ops deadletters replay {sent.id} --dry-run says how",
        "  queue_message_id q-no_sender",
        "  dequeue_count    1",
        "original (base64, decoded; JSON, indented):",
        "{",
        '  "id": "order-7",',
        '  "type": "sms",',
        '  "to": "+15551234567",',
        '  "body": "Order 7 shipped."',
        "}"]
    assert out.splitlines()[5].startswith("  dead since       ") and "(2m ago)" in out
    code, out, _ = run(capsys, "deadletters", "show", sent.id, "--original")
    assert json.loads(base64.b64decode(out)) == JOB
    code, out, _ = run(capsys, "deadletters", "show", sent.id, "--json")
    doc = json.loads(out)
    assert (doc["kind"], doc["envelope"]["queue_message_id"], doc["replayable"]) == (
        "no_sender", "q-no_sender", True)


def test_delete_asks_and_exits_3_for_an_id_it_cannot_find(env: dict[str, str]) -> None:
    rejected = queue(env, "-rejected")
    keep = rejected.send_message(letter("no_sender", {**JOB, "id": "k-1"})).id
    gone = rejected.send_message(letter("no_sender", {**JOB, "id": "g-1"})).id

    refused = ops(env, "deadletters", "delete", gone)  # not a terminal, no --yes
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == ("python -m ops deadletters: not a terminal, so it cannot ask: "
                              "add --yes to delete without asking\n")
    done = ops(env, "deadletters", "delete", gone, "nope-1", "--yes")
    assert done.returncode == 3
    assert done.stdout == f"deleted {gone} (rejected no_sender, job g-1)\n"
    assert done.stderr == (f"not found: nope-1 (looked in {env['OUTBOUND_QUEUE_NAME']}-rejected"
                           f" and {env['OUTBOUND_QUEUE_NAME']}-poison on Azurite on "
                           f"{done.stderr.split(' on Azurite on ')[1]}")
    assert [m.id for m in rejected.peek_messages(32)] == [keep]  # the other one is back


def test_a_terminal_is_asked_and_no_keeps_the_letter(env: dict[str, str]) -> None:
    import pty

    rejected = queue(env, "-rejected")
    mid = rejected.send_message(letter("no_sender", {**JOB, "id": "t-1"})).id
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ops", "deadletters", "delete", mid],
                                cwd=ROOT, env={**os.environ, **env}, stdin=follower,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(leader, b"n\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 0 and out == "Nothing deleted.\n"
    assert err == f"Delete for good:\n  {mid} (rejected no_sender, job t-1)\n? [y/N] "
    assert [m.id for m in rejected.peek_messages(32)] == [mid]


@pytest.mark.parametrize("argv", [["deadletters", "show", "nope-1"],
                                  ["deadletters", "replay", "nope-1"],
                                  ["deadletters", "replay", "--job", "nope"],
                                  ["deadletters", "delete", "nope-1", "--yes"],
                                  ["jobs", "show", "nope"]])
def test_every_id_it_cannot_find_exits_3_and_says_where_it_looked(
        env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    queue(env, "-rejected").send_message(letter("no_sender", {**JOB, "id": "n-1"}))
    code, out, err = run(capsys, *argv)
    assert code == 3
    assert f"(looked in {env['OUTBOUND_QUEUE_NAME']}-rejected and " \
           f"{env['OUTBOUND_QUEUE_NAME']}-poison on Azurite on 127.0.0.1:" in err
    assert len(queue(env, "-rejected").peek_messages(32)) == 1  # nothing else happened


# -- a refused job, by its own id --------------------------------------------------------

def test_a_job_refused_before_it_had_a_key_is_found_by_its_id(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    typo = {"id": "typo-1", "type": "sms", "to": "+15551234567", "bodyy": "Hi"}
    sent = queue(env, "-rejected").send_message(deadletters.envelope(
        kind="invalid_job", reason="field 'bodyy' is not allowed", original=json.dumps(typo),
        queue_message_id="q1", job_key=None, twilio_code=None, dequeue_count=1,
        at=time.time() - 30))
    code, out, _ = run(capsys, "deadletters", "list", "--job", "typo-1")
    assert code == 0 and out.splitlines()[1].split()[:6] == [
        "30s", "rejected", "invalid_job", "-", "typo-1", sent.id]
    code, out, err = run(capsys, "jobs", "show", "typo-1")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"job typo-1  (no row in table {env['JOBS_TABLE_NAME']}, Azurite on "
        f"{out.split('Azurite on ')[1].split(':')[0]}:{out.split('Azurite on ')[1].split(':')[1]}"
        ": it was refused before it was claimed, so it was never sent)",
        f"  dead letter {sent.id} in {env['OUTBOUND_QUEUE_NAME']}-rejected, 30s ago",
        "    kind     invalid_job",
        "    reason   field 'bodyy' is not allowed",
        f"    `python -m ops deadletters show {sent.id}` shows it; `python -m ops deadletters "
        f"replay {sent.id} --dry-run` says what a replay would do"]
    code, out, _ = run(capsys, "jobs", "show", "typo-1", "--json")
    assert json.loads(out) == {"RowKey": "typo-1", "status": None, "dead_letters": [
        {"message_id": sent.id, "queue_name": env["OUTBOUND_QUEUE_NAME"] + "-rejected",
         "kind": "invalid_job", "reason": "field 'bodyy' is not allowed"}]}


# -- enqueue an id again -----------------------------------------------------------------

def test_enqueueing_a_final_id_is_refused_unless_forced(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    row(env, "done-1", status="sent", sid="SM" + "5" * 32)
    row(env, "burned-1", status="rejected")
    row(env, "busy-1", status="retrying")
    code, out, err = run(capsys, "enqueue", "--sms", "+15551234567", "hi", "--id", "done-1")
    assert (code, out) == (1, "")
    assert err == ("python -m ops enqueue: not enqueued: job done-1 is sent as "
                   "SM55555555555555555555555555555555 in the ledger, so the app would not send "
                   "it again (a new id sends a new message; --force enqueues it anyway)\n")
    code, _, err = run(capsys, "enqueue", "--sms", "+15551234567", "hi", "--id", "burned-1")
    assert code == 1 and "`python -m ops deadletters replay --job burned-1` sends it" in err
    assert queue(env).peek_messages(32) == []
    code, out, _ = run(capsys, "enqueue", "--sms", "+15551234567", "hi", "--id", "done-1",
                       "--force")
    assert code == 0 and out.splitlines()[1] == (
        "note: job done-1 is sent as SM55555555555555555555555555555555 in the ledger: the app "
        "will not send this copy")
    code, out, _ = run(capsys, "enqueue", "--sms", "+15551234567", "hi", "--id", "busy-1")
    assert code == 0 and out.splitlines()[1] == (
        "note: job busy-1 is retrying in the ledger: the app sends it once, whichever copy "
        "comes first")
    code, out, _ = run(capsys, "enqueue", "--sms", "+15551234567", "hi", "--id", "new-1")
    assert code == 0 and len(out.splitlines()) == 1
    assert [json.loads(m.content)["id"] for m in queue(env).peek_messages(32)] == [
        "done-1", "busy-1", "new-1"]


# -- a closed pipe -----------------------------------------------------------------------

def test_output_into_a_closed_pipe_ends_quietly(env: dict[str, str]) -> None:
    rejected, _ = queue(env, "-rejected"), queue(env, "-poison")
    for i in range(32):  # a table longer than a pipe's buffer
        rejected.send_message(letter("no_sender", {**JOB, "id": f"p-{i}"},
                                     reason="why " * 200))
    # As a shell runs it: `... | head -1`.
    done = subprocess.run(f"{sys.executable} -m ops deadletters list | head -1", shell=True,
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60, executable="/bin/bash")
    assert done.stdout.split() == ["AGE", "QUEUE", "KIND", "CODE", "JOB", "KEY", "MESSAGE",
                                   "ID", "REASON"]
    assert done.stderr == ""
    # The reader gone before the first line is written: every run, not by luck.
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "ops", "deadletters", "list"], cwd=ROOT,
                              env={**os.environ, **env}, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")


# -- storage that is not running ---------------------------------------------------------

@pytest.mark.parametrize("argv", [["deadletters", "list"], ["jobs", "show", "order-7"],
                                  ["enqueue", "--sms", "+15551234567", "hi"],
                                  ["deadletters", "replay", "--all"],
                                  ["ledger", "retention"]])
def test_storage_that_is_not_running_is_named_within_a_second(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        argv: list[str]) -> None:
    ports = [services.free_port() for _ in range(3)]  # nothing listens there
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("AzureWebJobsStorage", services.azurite_connection_string(*ports))
    started = time.monotonic()
    code, out, err = run(capsys, *argv)
    elapsed = time.monotonic() - started
    assert (code, out) == (1, "")
    assert err == (f"python -m ops {argv[0]}: cannot reach Azurite on 127.0.0.1:{ports[1]} "
                   f"(127.0.0.1:{ports[1]}: connection refused); is scripts/run-local "
                   "running?\n")
    assert elapsed < 1.0, elapsed
    print(f"{' '.join(argv)}: {elapsed * 1000:.0f} ms")


# -- a Python without the packages -------------------------------------------------------

def test_a_python_without_the_packages_says_how_to_run_it(tmp_path: Path) -> None:
    # -S: no site-packages, as a system Python without the project's packages.
    done = ops({"LOCAL_SETTINGS_FILE": str(tmp_path / "none.json")}, "jobs", "show", "x",
               python=[sys.executable, "-S"])
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"python -m ops: this Python ({sys.executable}) is not the "
                                  "project's (missing: twilio, ")
    assert done.stderr.endswith("run `.venv/bin/python -m ops ...` from the repository "
                                "(scripts/bootstrap makes .venv)\n")


# -- webhooks signed for where they go ---------------------------------------------------

class App(LoopbackServer):
    """Answers 200 to anything and keeps what it got."""

    def handle(self, req: Recorded, handler: Any) -> Any:
        return 200, {"Content-Type": "text/plain"}, b"ok"


def test_a_webhook_is_signed_for_the_url_it_is_sent_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    token = "f" * 32
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", token)
    with App() as app:
        # A deployment's URL in the settings and the real token: sending elsewhere would
        # hand a request signed for the deployment to whatever listens there.
        monkeypatch.setenv("WEBHOOK_BASE_URL", "https://func-x.azurewebsites.net")
        code, out, err = run(capsys, "webhook", "--base", app.url, "/api/sms", "Body=hi")
        assert (code, out) == (2, "")
        assert err == (f"python -m ops webhook: {app.url} is not WEBHOOK_BASE_URL "
                       "(https://func-x.azurewebsites.net): the tool signs exactly the URL it "
                       "sends to, and a request signed for one host and sent to another could "
                       "be replayed against the first. Leave out --base to send to "
                       "https://func-x.azurewebsites.net, or run it with "
                       f"WEBHOOK_BASE_URL={app.url}\n")
        code, _, _ = run(capsys, "webhook", f"{app.url}/api/sms", "Body=hi")
        assert code == 2 and app.requests == []
        # Where WEBHOOK_BASE_URL is where it goes, the signature is for exactly that URL.
        monkeypatch.setenv("WEBHOOK_BASE_URL", app.url)
        assert run(capsys, "webhook", "--base", app.url, "/api/sms", "Body=hi")[0] == 0
        assert run(capsys, "webhook", "--get", "/api/twiml/message?Message=Hi", "B=1")[0] == 0
        post, get = app.requests
        validator = RequestValidator(token)
        assert validator.validate(f"{app.url}/api/sms", {"Body": "hi"},
                                  post.headers["X-Twilio-Signature"])
        assert get.path == "/api/twiml/message?Message=Hi&B=1"
        assert validator.validate(f"{app.url}{get.path}", {}, get.headers["X-Twilio-Signature"])
    # `sign` signs the URL it is given, whatever WEBHOOK_BASE_URL says.
    url = "https://func-y.azurewebsites.net/api/sms"
    code, out, _ = run(capsys, "sign", url, "Body=hi")
    assert code == 0 and validator.validate(url, {"Body": "hi"}, out.strip())
