# ruff: noqa: E402 - signal handlers first, so an early Ctrl-C or SIGTERM exits quietly
"""`python -m devhost.run_local` (what `scripts/run-local` runs): the app on this machine.

Settings come from the environment, then local.settings.json (or the file named by
LOCAL_SETTINGS_FILE), then the local defaults (`devhost.settings`). They also say what runs
locally: storage on 127.0.0.1 (`UseDevelopmentStorage=true` is 10000-10002) gets Azurite,
a `TWILIO_API_BASE_URL` on 127.0.0.1 (default :4010) the local Twilio API double (Prism
behind `devhost.twilio_front`); each is started unless it already listens there. Then the
app: `func start` where Azure Functions Core Tools are installed, else the dev host.

Before anything starts, the settings are read and every port is checked: the app's port
must be free, and a service's ports all free (start it) or all taken (reuse it). Ctrl-C
stops everything started here, at any moment; a process that stops on its own is reported
with the tail of its log, and the others are stopped.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":
    # scripts/run-local starts Python with Ctrl-C ignored; from here until main() takes it
    # over, it ends the run quietly (nothing has started yet).
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

import argparse
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from devhost import services
from devhost.settings import ROOT, SETTINGS_FILE_VARIABLE, load_settings, settings_file

APP_PORT = 7071
DEFAULT_WEBHOOK_BASE = f"http://127.0.0.1:{APP_PORT}"
AZURITE_DEFAULT_PORTS = (10000, 10001, 10002)
_LOOPBACK = ("127.0.0.1", "localhost")


class Started(list[services.Service]):
    """The processes this run started, in order, each announced with its PID as it starts
    (so a run stopped midway has said what it stopped)."""

    def append(self, svc: services.Service) -> None:
        super().append(svc)
        print(f"  started {svc.name} (pid {svc.pid})", flush=True)


class StartError(RuntimeError):
    """Something to fix before anything can start; the message says what."""


@dataclass
class Plan:
    """What a run needs: the app's port, and the local services with their ports."""

    app_port: int
    env: dict[str, str]
    azurite: tuple[int, ...] | None = None  # blob, queue, table (0: any free port)
    twilio_port: int | None = None
    reuse: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def azurite_ports(connection: str) -> tuple[int, ...] | None:
    """Azurite's (blob, queue, table) ports when `connection` is local storage, else None."""
    if "usedevelopmentstorage=true" in connection.replace(" ", "").lower():
        return AZURITE_DEFAULT_PORTS
    parts = dict(p.split("=", 1) for p in connection.split(";") if "=" in p)
    queue = urlsplit(parts.get("QueueEndpoint", ""))
    if queue.hostname not in _LOOPBACK:
        return None
    ports = []
    for name in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint"):
        url = urlsplit(parts.get(name, ""))
        ports.append((url.port or 0) if url.hostname in _LOOPBACK else 0)
    return tuple(ports)


def plan(env: Mapping[str, str], app_port: int) -> Plan:
    """Read the settings (as the app will) and decide what to start; raises `StartError`."""
    from shared.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        raise StartError(f"settings: {exc}") from None
    out = Plan(app_port, dict(env))
    conn = settings.storage.connection_string
    out.azurite = azurite_ports(conn) if conn else None
    api = urlsplit(settings.api_base_url)
    if api.hostname in _LOOPBACK:
        out.twilio_port = api.port or 80
    out.summary = [
        f"outbound queue {settings.outbound_queue_name} (dead letters: "
        f"{settings.rejected_queue_name}, {settings.poison_queue_name}); jobs table "
        f"{settings.jobs_table_name}; events {settings.inbound_queue_name}, "
        f"{settings.status_queue_name}",
        f"sender {settings.from_number or '(none: jobs need a from)'}; SMS keywords "
        f"{', '.join(settings.sms_keywords) or '(none)'}; call flow "
        f"{'on' if settings.call_flow else 'off (VOICE_GREETING)'}",
    ]
    return out


def check_ports(p: Plan) -> None:
    """Fail before anything starts if a port is taken by something we cannot use."""
    problems = []
    if services.port_open(p.app_port):
        problems.append(f"port {p.app_port} (the app) is in use: stop what listens there, "
                        "or choose another port with --port")
    if p.azurite:
        wanted = [port for port in p.azurite if port]
        taken = [port for port in wanted if services.port_open(port)]
        if taken and len(taken) < len(wanted):
            problems.append(
                f"Azurite's ports {', '.join(map(str, wanted))}: {', '.join(map(str, taken))} "
                "in use, the others free, so something else listens there: stop it, or point "
                "AzureWebJobsStorage at other ports")
        elif taken:
            p.reuse.append("azurite")
    if p.twilio_port is not None and services.port_open(p.twilio_port):
        p.reuse.append("twilio")
    ports = [p.app_port, *(p.azurite or ()), *([p.twilio_port] if p.twilio_port else [])]
    clash = sorted({port for port in ports if port and ports.count(port) > 1})
    if clash:
        problems.append(f"port(s) {', '.join(map(str, clash))} given to two services")
    if problems:
        raise StartError("; ".join(problems))


def _python() -> str:
    exe = sys.executable
    return os.path.relpath(exe, ROOT) if exe.startswith(str(ROOT)) else exe


def try_commands(env: Mapping[str, str], app_port: int) -> list[str]:
    """What the banner suggests (the README walk runs these too)."""
    base = "" if env.get("WEBHOOK_BASE_URL") or app_port == APP_PORT else \
        f" --base http://127.0.0.1:{app_port}"
    py = f"{_python()} -m ops"
    return [f"{py} webhook{base} /api/sms From=+15551234567 To=+15005550006 "
            "MessageSid=SM0123456789abcdef0123456789abcdef Body=HOURS",
            f"{py} webhook{base} /api/voice From=+15551234567 To=+15005550006 "
            "CallSid=CA0123456789abcdef0123456789abcdef",
            f'{py} enqueue --sms +15551234567 "Hello from the queue"',
            f"{py} deadletters list"]


def start(p: Plan, log_dir: Path, started: list[services.Service]) -> list[str]:
    """Start what the plan needs, in order; returns the banner's service lines."""
    lines = []
    if p.azurite is None:
        lines.append("storage   AzureWebJobsStorage from your settings (not local)")
    elif "azurite" in p.reuse:
        lines.append(f"storage   the Azurite already on 127.0.0.1:{p.azurite[1]}")
    else:
        blob, queue, table = p.azurite
        azurite = services.start_azurite(log_dir, blob=blob, queue=queue, table=table,
                                         started=started)
        ports = azurite.ports
        lines.append(f"storage   Azurite on 127.0.0.1:{ports['blob']}, {ports['queue']}, "
                     f"{ports['table']} (pid {azurite.pid}, log {_rel(azurite.log_path)})")
    if p.twilio_port is None:
        lines.append(f"Twilio    {p.env.get('TWILIO_API_BASE_URL')} from your settings")
    elif "twilio" in p.reuse:
        known = services.is_twilio_front(f"http://127.0.0.1:{p.twilio_port}")
        lines.append(f"Twilio    what already listens on 127.0.0.1:{p.twilio_port}" + (
            " (the local Twilio API double)" if known else
            " (not the local double's front: Prism alone refuses MMS; stop it and run again)"))
    else:
        prism, front = services.start_twilio_double(log_dir, port=p.twilio_port,
                                                    started=started)
        lines.append(f"Twilio    the local Twilio API double on http://127.0.0.1:"
                     f"{p.twilio_port}: Prism with Twilio's spec (pid {prism.pid}, log "
                     f"{_rel(prism.log_path)}) behind its front (pid {front.pid}, log "
                     f"{_rel(front.log_path)})")
    func = shutil.which("func")
    cmd = ([func, "start", "--port", str(p.app_port)] if func else
           [sys.executable, "-m", "devhost", "--port", str(p.app_port)])
    app = services.spawn("func start" if func else "dev host", cmd, log_path=None,
                         ports={"http": p.app_port}, started=started, env=p.env, cwd=ROOT)
    app.wait_ready(120, p.app_port)
    lines.append(f"app       {app.name} (pid {app.pid}) on http://127.0.0.1:{p.app_port}/api/")
    return lines


def _rel(path: Path | None) -> str:
    if path is None:
        return "-"
    return os.path.relpath(path, ROOT) if str(path).startswith(str(ROOT)) else str(path)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def watch(started: list[services.Service]) -> None:
    """Until Ctrl-C; a process that stops on its own ends the run."""
    while True:
        for svc in started:
            code = svc.exited()
            if code is not None:
                raise svc.failure(f"stopped on its own (exit code {code})")
        time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    # From here on, Ctrl-C (or SIGTERM) stops what was started, then ends the run.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(prog="scripts/run-local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=APP_PORT, help="the app's port (7071)")
    parser.add_argument("--settings", type=Path,
                        help="a local.settings.json to read (default: the repository's)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".devhost",
                        help="where the services' logs go (default .devhost/)")
    args = parser.parse_args(argv)
    started = Started()
    try:
        if args.settings:
            os.environ[SETTINGS_FILE_VARIABLE] = str(args.settings.resolve())
        env = load_settings()
        p = plan(env, args.port)
        check_ports(p)
        print(f"Settings: environment, then {_rel(settings_file())}"
              f"{'' if settings_file().exists() else ' (none)'}, then the local defaults")
        lines = start(p, args.log_dir, started)
        print("\nReady:\n" + "\n".join(f"  {line}" for line in lines + p.summary))
        print("\nTry, in another terminal:\n" + "\n".join(
            f"  {cmd}" for cmd in try_commands(env, args.port)))
        print("\nCtrl-C stops everything started here.", flush=True)
        watch(started)
        return 0  # not reached: watch returns only by an exception
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except (StartError, services.ServiceFailed, FileNotFoundError, ValueError) as exc:
        print(f"run-local: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if started:
            print(f"Stopping {', '.join(s.name for s in reversed(started))}.",
                  file=sys.stderr, flush=True)
        for svc in reversed(started):
            svc.stop()


if __name__ == "__main__":
    sys.exit(main())
