# ruff: noqa: E402 - signal handlers first, so an early Ctrl-C or SIGTERM exits quietly
"""`python -m devhost.run_local` (what `scripts/run-local` runs): the app on this machine.

Settings come from the environment, then local.settings.json (or the file named by
LOCAL_SETTINGS_FILE), then the local defaults (`ops.localsettings`). They also say what runs
locally: storage on 127.0.0.1 (`UseDevelopmentStorage=true` is 10000-10002) gets Azurite,
a `TWILIO_API_BASE_URL` on 127.0.0.1 (default :4010) the local Twilio API double (Prism
behind `devhost.twilio_front`); each is started unless it already listens there. Then the
app: `func start` where Azure Functions Core Tools are installed, else the dev host.

Before anything starts, the settings are read and every port is checked: the app's port
must be free, and a service's ports all free (start it) or all taken (reuse it, if it is
what it should be: an Azurite that answers a queue call, the local Twilio API double's
front). Once Azurite is up, the app's queues and jobs table are created there
(`devhost.local_storage` says why). Ctrl-C stops everything started here, at any moment; a
process that stops on its own is reported with the tail of its log, and the others are
stopped.
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

from devhost import local_storage, services
from ops.localsettings import (
    ROOT,
    SETTINGS_FILE_VARIABLE,
    connection_fields,
    is_development_storage,
    is_local_storage,
    is_loopback,
    load_settings,
    settings_file,
)

APP_PORT = 7071
DEFAULT_WEBHOOK_BASE = f"http://127.0.0.1:{APP_PORT}"
AZURITE_DEFAULT_PORTS = (10000, 10001, 10002)


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
    storage: str = ""  # AzureWebJobsStorage, when it is Azurite
    queues: tuple[str, ...] = ()  # the app's, made on Azurite before the app starts
    table: str = ""
    reuse: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def azurite_ports(connection: str) -> tuple[int, ...] | None:
    """Azurite's (blob, queue, table) ports when `connection` is local storage, else None."""
    if is_development_storage(connection):
        return AZURITE_DEFAULT_PORTS
    if not is_local_storage(connection):
        return None
    parts = connection_fields(connection)
    ports = []
    for name in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint"):
        url = parts.get(name, "")
        ports.append((urlsplit(url).port or 0) if is_loopback(url) else 0)
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
    out.storage = conn or ""
    if is_loopback(settings.api_base_url):
        out.twilio_port = urlsplit(settings.api_base_url).port or 80
    out.queues = (settings.outbound_queue_name, settings.rejected_queue_name,
                  settings.poison_queue_name, settings.inbound_queue_name,
                  settings.status_queue_name)
    out.table = settings.jobs_table_name
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
        if services.is_twilio_front(f"http://127.0.0.1:{p.twilio_port}"):
            p.reuse.append("twilio")
        else:  # a bare Prism refuses MMS; anything else is not Twilio's API at all
            problems.append(
                f"port {p.twilio_port} (TWILIO_API_BASE_URL) is in use by something that is "
                "not the local Twilio API double: stop it, or point TWILIO_API_BASE_URL at a "
                "free port")
    ports = [p.app_port, *(p.azurite or ()), *([p.twilio_port] if p.twilio_port else [])]
    clash = sorted({port for port in ports if port and ports.count(port) > 1})
    if clash:
        problems.append(f"port(s) {', '.join(map(str, clash))} given to two services")
    if problems:
        raise StartError("; ".join(problems))
    if "azurite" in p.reuse:
        check_azurite(p)


def check_azurite(p: Plan) -> None:
    """One queue call to the Azurite this run would reuse, before anything starts."""
    assert p.azurite is not None
    where = f"127.0.0.1:{p.azurite[1]}"
    try:
        local_storage.probe(p.storage)
    except local_storage.StorageProblem as exc:
        if exc.api_version_refused:
            raise StartError(
                f"the Azurite on {where} refused a queue call ({exc}: it checks the API "
                "version, and the SDK is newer): restart it with --skipApiVersionCheck, or "
                "stop it and run again (run-local then starts its own)") from None
        raise StartError(
            f"what listens on {where} (Azurite's queue port) did not answer a queue call "
            f"({exc}): stop it and run again, or point AzureWebJobsStorage at other ports"
        ) from None


def prepare_storage(p: Plan, where: str) -> None:
    """The app's queues and table on Azurite (devhost.local_storage says why)."""
    try:
        local_storage.create(p.storage, p.queues, p.table)
    except local_storage.StorageProblem as exc:
        raise StartError(f"could not create the app's queues and table on {where}: {exc}"
                         ) from None


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
        where = f"127.0.0.1:{p.azurite[1]}"
        prepare_storage(p, f"the Azurite on {where}")
        lines.append(f"storage   the Azurite already on {where}")
    else:
        blob, queue, table = p.azurite
        azurite = services.start_azurite(log_dir, blob=blob, queue=queue, table=table,
                                         started=started)
        ports = azurite.ports
        prepare_storage(p, f"Azurite on 127.0.0.1:{ports['queue']}")
        lines.append(f"storage   Azurite on 127.0.0.1:{ports['blob']}, {ports['queue']}, "
                     f"{ports['table']} (pid {azurite.pid}, log {_rel(azurite.log_path)})")
    if p.twilio_port is None:
        lines.append(f"Twilio    {p.env.get('TWILIO_API_BASE_URL')} from your settings")
    elif "twilio" in p.reuse:
        lines.append(f"Twilio    the local Twilio API double already on 127.0.0.1:"
                     f"{p.twilio_port}")
    else:
        prism, front = services.start_twilio_double(log_dir, port=p.twilio_port,
                                                    started=started)
        lines.append(f"Twilio    the local Twilio API double on http://127.0.0.1:"
                     f"{p.twilio_port}: Prism with Twilio's spec (pid {prism.pid}, log "
                     f"{_rel(prism.log_path)}) behind its front (pid {front.pid}, log "
                     f"{_rel(front.log_path)})")
    name, cmd, env = app_command(p)
    app = services.spawn(name, cmd, log_path=None, ports={"http": p.app_port},
                         started=started, env=env, cwd=ROOT)
    app.wait_ready(120, p.app_port)
    lines.append(f"app       {app.name} (pid {app.pid}) on http://127.0.0.1:{p.app_port}/api/")
    return lines


def app_command(p: Plan) -> tuple[str, list[str], dict[str, str]]:
    """`func start` where Core Tools are installed, else the dev host: name, command, env."""
    func = shutil.which("func", path=p.env.get("PATH"))
    if func is None:
        return "dev host", [sys.executable, "-m", "devhost", "--port", str(p.app_port)], p.env
    # The host starts its Python worker with the `python` it finds, which must be this venv's
    # to import the app's packages: say so twice, on PATH and by name (Core Tools' own key).
    env = {**p.env, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                             p.env.get("PATH", os.defpath)]),
           "languageWorkers__python__defaultExecutablePath": sys.executable}
    return "func start", [func, "start", "--port", str(p.app_port)], env


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
