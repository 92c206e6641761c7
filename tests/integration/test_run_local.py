"""`scripts/run-local` at start-up: settings and ports checked before anything starts,
Ctrl-C at any moment ends cleanly (through a pipe too), a dying service is reported with its
log tail, the banner shows resolved names, local data survives a restart (`--fresh` starts
clean), and a second run-local does not share the first one's services."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from devhost import services
from tests.integration.run_local_helpers import READY, ROOT, Ports, RunLocal, alive, local_env


@pytest.fixture
def ports() -> Ports:
    return Ports.free()


@pytest.fixture
def listening(ports: Ports) -> Iterator[list[socket.socket]]:
    """Sockets a test listens on, closed after it."""
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def listen(socks: list[socket.socket], port: int) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    socks.append(s)


def nothing_started(run: RunLocal, ports: Ports) -> None:
    assert "started" not in run.output and "Traceback" not in run.output
    for port in (ports.blob, ports.queue, ports.table, ports.twilio):
        assert not services.port_open(port), port


def test_a_busy_app_port_fails_before_anything_starts(
        tmp_path: Path, ports: Ports, listening: list[socket.socket]) -> None:
    listen(listening, ports.app)
    started = time.monotonic()
    run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs")
    assert run.wait() == 1
    assert time.monotonic() - started < 15
    assert f"run-local: port {ports.app} (the app) is in use: stop what listens there, or " \
           "choose another port with --port" in run.lines
    nothing_started(run, ports)


def test_azurite_ports_half_taken_fail_before_anything_starts(
        tmp_path: Path, ports: Ports, listening: list[socket.socket]) -> None:
    listen(listening, ports.queue)
    run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs")
    assert run.wait() == 1
    assert f"run-local: Azurite's ports {ports.blob}, {ports.queue}, {ports.table}: " \
           f"{ports.queue} in use, the others free" in run.output
    assert "started" not in run.output and not services.port_open(ports.twilio)


def test_a_bad_setting_fails_before_anything_starts(tmp_path: Path, ports: Ports) -> None:
    run = RunLocal.start(local_env(tmp_path, ports, TWILIO_FROM_NUMBER="555-1234"), ports,
                         tmp_path / "logs")
    assert run.wait() == 1
    assert "run-local: settings: TWILIO_FROM_NUMBER must be an E.164 number such as " \
           "+15551234567; got '555-1234'." in run.lines
    nothing_started(run, ports)


@pytest.mark.parametrize("after", ["started Azurite", "started Prism",
                                   "started Twilio API front", "started dev host"])
def test_ctrl_c_during_start_up_stops_everything_quietly(tmp_path: Path, ports: Ports,
                                                         after: str) -> None:
    run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs")
    try:
        run.wait_for(after)
        run.ctrl_c()  # while the service just started is still getting ready
        assert run.wait() == 130
    finally:
        run.stop()
    assert "Traceback" not in run.output and "Interrupted." in run.lines
    pids = run.pids()
    assert pids and not [name for name, pid in pids.items() if alive(pid)]
    assert run.lines[-1].startswith("Stopping ")


def test_a_dying_service_is_reported_with_its_log_tail(tmp_path: Path, ports: Ports) -> None:
    env = local_env(tmp_path, ports)
    run = RunLocal.start(env, ports, tmp_path / "logs")
    try:
        run.wait_for(READY)
        queue = env["OUTBOUND_QUEUE_NAME"]
        # The banner: resolved names, not %SETTING% references.
        assert "%" not in run.output
        assert f"  outbound: queue {queue}" in run.lines
        assert f"  outbound queue {queue} (dead letters: {queue}-rejected, {queue}-poison); " \
               f"jobs table {env['JOBS_TABLE_NAME']}; events {env['INBOUND_QUEUE_NAME']}, " \
               f"{env['STATUS_QUEUE_NAME']}" in run.lines
        assert "  sender +15005550006; SMS keywords HOURS, ADDRESS; call flow on" in run.lines
        # Made by run-local on its own Azurite: the dev host makes only the queue it reads.
        assert storage_made(env) == app_storage(env)
        os.kill(run.pids()["Prism"], signal.SIGKILL)
        assert run.wait(30) == 1
    finally:
        run.stop()
    out = run.output
    assert "run-local: Prism stopped on its own (exit code -9) (log " in out
    tail = out.split("its last lines:\n", 1)[1].splitlines()
    assert tail[0].startswith("  | ") and any("Prism is listening" in t for t in tail), out
    assert "Traceback" not in out
    assert not [name for name, pid in run.pids().items() if alive(pid)]


# -- what run-local makes, and what it reuses ---------------------------------------------

def app_storage(env: dict[str, str]) -> tuple[set[str], set[str]]:
    """The queues and table the app's settings name."""
    out = env["OUTBOUND_QUEUE_NAME"]
    return ({out, f"{out}-rejected", f"{out}-poison", env["INBOUND_QUEUE_NAME"],
             env["STATUS_QUEUE_NAME"]}, {env["JOBS_TABLE_NAME"]})


def storage_made(env: dict[str, str]) -> tuple[set[str], set[str]]:
    conn = env["AzureWebJobsStorage"]
    queues = {q.name for q in QueueServiceClient.from_connection_string(conn).list_queues()}
    tables = {t.name for t in TableServiceClient.from_connection_string(conn).list_tables()}
    return queues, tables


def azurite_without_the_flag(ports: Ports, log_dir: Path) -> services.Service:
    """An Azurite started by hand as its docs show, without --skipApiVersionCheck."""
    cmd = [str(services.BIN / "azurite"), "--silent", "--disableTelemetry",
           "--inMemoryPersistence", "--blobHost", "127.0.0.1", "--blobPort", str(ports.blob),
           "--queueHost", "127.0.0.1", "--queuePort", str(ports.queue),
           "--tableHost", "127.0.0.1", "--tablePort", str(ports.table)]
    svc = services.spawn("Azurite", cmd, log_path=log_dir / "azurite.log",
                         ports={"queue": ports.queue}, cwd=log_dir)
    for port in (ports.blob, ports.queue, ports.table):
        svc.wait_ready(30, port)
    return svc


def test_a_reused_azurite_that_refuses_queue_calls_stops_the_start(
        tmp_path: Path, ports: Ports) -> None:
    (tmp_path / "azurite").mkdir()
    azurite = azurite_without_the_flag(ports, tmp_path / "azurite")
    try:
        run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs")
        assert run.wait() == 1
    finally:
        azurite.stop()
    assert run.lines == [
        f"run-local: the Azurite on 127.0.0.1:{ports.queue} refused a queue call (400 "
        "InvalidHeaderValue: it checks the API version, and the SDK is newer): restart it "
        "with --skipApiVersionCheck, or stop it and run again (run-local then starts its own)"]
    assert not services.port_open(ports.twilio)


class NotTwilio(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.send_error(404)

    def log_message(self, *_: object) -> None:
        pass


def test_an_unknown_server_on_the_twilio_port_stops_the_start(tmp_path: Path,
                                                             ports: Ports) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", ports.twilio), NotTwilio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs")
        assert run.wait() == 1
    finally:
        server.shutdown()
        server.server_close()
    assert run.lines == [
        f"run-local: port {ports.twilio} (TWILIO_API_BASE_URL) is in use by something that "
        "is not the local Twilio API double: stop it, or point TWILIO_API_BASE_URL at a free "
        "port"]
    nothing_started(run, ports)


# A stand-in for Core Tools' `func`: records how it was started and whether the Python it
# was given imports the app, then serves --port (so run-local sees the app up).
STUB_FUNC = """#!/bin/sh
worker="$languageWorkers__python__defaultExecutablePath"
if "$worker" -c "import function_app" 2>/dev/null; then imports=yes; else imports=no; fi
printf '%s\\n' "$*" "$PATH" "$worker" "$imports" "$(command -v python)" > "$FUNC_STUB_RECORD"
exec "$worker" -m http.server --bind 127.0.0.1 "$3"
"""


def test_func_start_gets_this_venv_and_finds_its_queues(tmp_path: Path, ports: Ports) -> None:
    stub = tmp_path / "bin" / "func"
    stub.parent.mkdir()
    stub.write_text(STUB_FUNC)
    stub.chmod(0o755)
    record = tmp_path / "func-started"
    env = local_env(tmp_path, ports, FUNC_STUB_RECORD=str(record))
    env["PATH"] = f"{stub.parent}:/usr/local/bin:/usr/bin:/bin"
    # An Azurite already running (with the flag): reused, probed, and given the queues.
    azurite = services.start_azurite(tmp_path / "azurite", blob=ports.blob, queue=ports.queue,
                                     table=ports.table)
    run = RunLocal.start(env, ports, tmp_path / "logs")
    try:
        run.wait_for(READY)
        venv_bin = ROOT / ".venv" / "bin"
        assert record.read_text().splitlines() == [
            f"start --port {ports.app}", f"{venv_bin}:{env['PATH']}", str(venv_bin / "python"),
            "yes", str(venv_bin / "python")]
        assert f"  app       func start (pid {run.pids()['func start']}) on " \
               f"http://127.0.0.1:{ports.app}/api/" in run.lines
        assert f"  storage   the Azurite already on 127.0.0.1:{ports.queue}" in run.lines
        assert storage_made(env) == app_storage(env)
        # The README's first enqueue, with no app that creates the queue.
        res = subprocess.run([str(venv_bin / "python"), "-m", "ops", "enqueue", "--sms",
                              "+15551234567", "Hello from the queue"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and res.stdout.startswith("enqueued job msg-"), res.stderr
    finally:
        run.stop()
        azurite.stop()
    assert "Traceback" not in run.output
    assert not [name for name, pid in run.pids().items() if alive(pid)]


# -- local data, pipes, a second instance -------------------------------------------------

def ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "ops", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def job_status(env: dict[str, str], key: str) -> str | None:
    """The job's status in the jobs table, None when it has no row."""
    shown = ops(env, "jobs", "show", key, "--json")
    return json.loads(shown.stdout)["status"] if shown.returncode == 0 else None


def wait_all_stopped(pids: dict[str, int], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while running := [name for name, pid in pids.items() if alive(pid)]:
        assert time.monotonic() < deadline, f"left running: {running}"
        time.sleep(0.1)


def stopped_cleanly(run: RunLocal, code: int = 130) -> None:
    assert run.wait() == code and "Traceback" not in run.output
    assert not [name for name, pid in run.pids().items() if alive(pid)]


def test_local_data_survives_a_restart_and_fresh_starts_clean(tmp_path: Path,
                                                               ports: Ports) -> None:
    env = local_env(tmp_path, ports)
    data = tmp_path / "azurite-data"
    job = '{"id": "kept-1", "type": "sms", "to": "+15551234567", "body": "Kept."}'

    def run_once(*args: str) -> tuple[RunLocal, str | None]:
        run = RunLocal.start(env, ports, tmp_path / "logs", *args, data_dir=data)
        try:
            run.wait_for(READY)
            status = job_status(env, "kept-1")
            run.ctrl_c()
            stopped_cleanly(run)
        finally:
            run.stop()
        return run, status

    first = RunLocal.start(env, ports, tmp_path / "logs", data_dir=data)
    try:
        first.wait_for(READY)
        assert f"(pid {first.pids()['Azurite']}, data {data}/, kept across runs; log " \
               f"{tmp_path / 'logs' / 'azurite.log'})" in first.output
        assert ops(env, "enqueue", job).returncode == 0
        deadline = time.monotonic() + 30
        while job_status(env, "kept-1") != "sent":
            assert time.monotonic() < deadline, "kept-1 was not sent"
            time.sleep(0.3)
        first.ctrl_c()
        stopped_cleanly(first)
    finally:
        first.stop()
    again, status = run_once()
    assert status == "sent", again.output  # the row survived the restart
    assert "Fresh start" not in again.output
    fresh, status = run_once("--fresh")
    assert f"Fresh start: removed local data in {data}/ (queues, jobs table, dead letters)." \
        in fresh.lines
    assert status is None  # gone: `jobs show` finds no row
    assert {e.name for e in data.iterdir()} >= {"__azurite_db_queue__.json"}  # in use again


def test_help_says_where_local_data_lives_and_how_to_start_clean() -> None:
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "devhost.run_local",
                          "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    text = " ".join(res.stdout.split())
    assert res.returncode == 0
    assert "Local data survives a restart: the Azurite started here keeps its queues, jobs " \
           "table and dead letters in .azurite/ (git-ignored; --data-dir names another " \
           "folder), and --fresh starts it empty." in text
    assert "--fresh start that Azurite empty: removes its data (queues, jobs, dead letters) " \
           "from --data-dir first" in text


def test_fresh_refuses_an_azurite_it_did_not_start(tmp_path: Path, ports: Ports) -> None:
    azurite = services.start_azurite(tmp_path / "azurite", blob=ports.blob, queue=ports.queue,
                                     table=ports.table)
    try:
        run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs", "--fresh")
        assert run.wait() == 1
    finally:
        azurite.stop()
    assert run.lines == [
        f"run-local: --fresh empties the Azurite started here, but one already listens on "
        f"127.0.0.1:{ports.queue} (not started here): stop it, or run without --fresh"]


@pytest.mark.parametrize("attempt", [1, 2])
def test_ctrl_c_stops_everything_when_the_output_goes_through_tee(
        tmp_path: Path, ports: Ports, attempt: int) -> None:
    """A terminal's Ctrl-C reaches the whole pipeline: tee dies at once, and run-local's
    output has nowhere to go while it stops its services."""
    log = tmp_path / "log"
    command = (f"scripts/run-local --port {ports.app} --log-dir {tmp_path / 'logs'} "
               f"--data-dir {tmp_path / 'data'} 2>&1 | tee {log} >/dev/null")
    shell = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=local_env(tmp_path, ports),
                             stdin=subprocess.DEVNULL, start_new_session=True)
    run = RunLocal(shell)  # for its parsing of what it started
    try:
        deadline = time.monotonic() + 120
        while READY not in (log.read_text() if log.exists() else ""):
            assert shell.poll() is None and time.monotonic() < deadline, \
                log.read_text() if log.exists() else "no log"
            time.sleep(0.1)
        run.lines = log.read_text().splitlines()
        pids = run.pids()
        assert set(pids) == {"Azurite", "Prism", "Twilio API front", "dev host"}
        os.killpg(shell.pid, signal.SIGINT)
        shell.wait(timeout=60)
        wait_all_stopped(pids)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    for port in (ports.app, ports.queue, ports.twilio):
        assert not services.port_open(port), port


def test_services_stop_when_run_local_is_killed(tmp_path: Path, ports: Ports) -> None:
    run = RunLocal.start(local_env(tmp_path, ports), ports, tmp_path / "logs")
    try:
        run.wait_for(READY)
        pids = run.pids()
        os.kill(run.proc.pid, signal.SIGKILL)  # no chance to stop anything itself
        run.wait()
        wait_all_stopped(pids)
    finally:
        run.stop()


def test_a_second_run_local_on_the_same_services_refuses_in_one_line(tmp_path: Path,
                                                                     ports: Ports) -> None:
    env = local_env(tmp_path, ports)
    first = RunLocal.start(env, ports, tmp_path / "logs")
    try:
        first.wait_for(READY)
        other = Ports(ports.blob, ports.queue, ports.table, ports.twilio, services.free_port())
        second = RunLocal.start(env, other, tmp_path / "logs2")
        assert second.wait() == 1
        assert second.lines == [
            f"run-local: another run-local (pid {first.proc.pid}, app on port {ports.app}) "
            f"uses the services these settings name (port {ports.blob}); a second app would "
            "take its jobs: use that one, stop it first, or give this run other ports for "
            "AzureWebJobsStorage and TWILIO_API_BASE_URL (--settings)"]
        assert not services.port_open(other.app)
        assert ops(env, "webhook", "--base", f"http://127.0.0.1:{ports.app}", "/api/sms",
                   "From=+15551234567", "To=+15005550006",
                   "MessageSid=SM0123456789abcdef0123456789abcdef", "Body=HOURS"
                   ).stdout.startswith("200 ")  # the first one still serves
        first.ctrl_c()
        stopped_cleanly(first)
    finally:
        first.stop()
    # Once the first has stopped, its services are free again: a new run starts its own.
    again = RunLocal.start(env, ports, tmp_path / "logs")
    try:
        again.wait_for(READY)
    finally:
        again.stop()
