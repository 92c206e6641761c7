"""`scripts/run-local` at start-up: settings and ports checked before anything starts,
Ctrl-C at any moment ends cleanly, a dying service is reported with its log tail, and the
banner shows resolved names."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost import services
from tests.integration.run_local_helpers import READY, Ports, RunLocal, alive, local_env


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
