# ruff: noqa: E402 - signal handlers first, so an early Ctrl-C or SIGTERM exits quietly
"""`python -m devhost.run_local` (what `scripts/run-local` runs): the app on this machine.

Settings come from the environment, then local.settings.json (or the file named by
LOCAL_SETTINGS_FILE), then the local defaults (`ops.localsettings`). They also say what runs
locally: storage on 127.0.0.1 (`UseDevelopmentStorage=true` is 10000-10002) gets Azurite,
a `TWILIO_API_BASE_URL` on 127.0.0.1 (default :4010) the local Twilio API double (Prism
behind `devhost.twilio_front`); each is started unless it already listens there. Then the
app: `func start` where Azure Functions Core Tools are installed, else the dev host.

Local data survives a restart: the Azurite started here keeps its queues, jobs table and
dead letters in .azurite/ (git-ignored; --data-dir names another folder), and --fresh
starts it empty.

Before anything starts, the settings are read and every port is checked: the app's port
must be free, and a service's ports all free (start it) or all taken (reuse it, if it is
what it should be: an Azurite that answers a queue call, the local Twilio API double's
front). Services another run-local uses are not shared: a second run-local on the same
settings (another --port) refuses, as its app would take the first one's jobs; give it
other service ports in its settings instead. Once Azurite is up, the app's queues and jobs
table are created there (`devhost.local_storage` says why).

Ctrl-C stops everything started here, at any moment, however the output is piped (e.g.
`scripts/run-local 2>&1 | tee log`); so does closing the terminal. A process that stops on
its own is reported with the tail of its log, and the others are stopped.
"""

from __future__ import annotations

import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

if __name__ == "__main__":
    # scripts/run-local starts Python with Ctrl-C ignored; from here until main() takes it
    # over, it ends the run quietly (nothing has started yet).
    for _sig in STOP_SIGNALS:
        signal.signal(_sig, lambda *_: sys.exit(130))

import argparse
import contextlib
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devhost import local_storage, port_claims, services
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
DATA_DIR = ROOT / ".azurite"
# What Azurite keeps in its --location folder (3.35): --fresh removes these and only these.
AZURITE_DATA = re.compile(r"^(__azurite_db_\w+__\.json|__\w+storage__)$")


def say(text: str, *, err: bool = False) -> None:
    """Print, even to a pipe whose reader has gone (`| tee log` after Ctrl-C): the run must
    still stop what it started. A closed stream is sent to /dev/null from then on."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: already closed
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())


class Started(list[services.Service]):
    """The processes this run started, in order, each announced with its PID as it starts
    (so a run stopped midway has said what it stopped)."""

    def append(self, svc: services.Service) -> None:
        super().append(svc)
        say(f"  started {svc.name} (pid {svc.pid})")


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
    data_dir: Path | None = None  # Azurite's data; None: in memory
    fresh: bool = False  # start Azurite empty


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
        f"sender {sender(settings)}; SMS keywords "
        f"{', '.join(settings.sms_keywords) or '(none)'}; call flow "
        f"{'on' if settings.call_flow else 'off (VOICE_GREETING)'}",
    ]
    return out


def sender(settings: Any) -> str:
    """Who sends a job that names no sender, as the app decides it (`shared.jobs.prepare`)."""
    from shared.jobs import Job, NoSender, prepare

    def used(job: Job) -> str | None:
        try:
            sent = prepare(job, settings, "banner")
        except NoSender:
            return None
        return f"via Messaging Service {sent.messaging_service_sid}" \
            if sent.messaging_service_sid else f"from {sent.from_}"

    sms = used(Job("sms", "+15551234567", body="-"))
    call = used(Job("call", "+15551234567", say="-"))
    if sms == call:
        return sms[len("from "):] if sms else "(none: jobs need a from)"
    return f"SMS {sms or '(none: SMS jobs need a from)'}, calls " \
        f"{call or '(none: call jobs need a from)'}"


def check_ports(p: Plan, claims: port_claims.PortClaims) -> None:
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
    check_not_shared(p, claims)
    if p.fresh and p.azurite is None:
        raise StartError("--fresh empties the Azurite started here, but AzureWebJobsStorage "
                         "is not local storage: run without --fresh")
    if p.fresh and "azurite" in p.reuse:
        raise StartError(f"--fresh empties the Azurite started here, but one already listens "
                         f"on 127.0.0.1:{p.azurite[1] if p.azurite else ''} (not started "
                         "here): stop it, or run without --fresh")
    if "azurite" in p.reuse:
        check_azurite(p)


def service_ports(p: Plan) -> list[int]:
    return [*(port for port in p.azurite or () if port), *([p.twilio_port] if p.twilio_port
                                                           else [])]


def check_not_shared(p: Plan, claims: port_claims.PortClaims) -> None:
    """A service another run-local uses is its own: its app would take this one's jobs."""
    for port in service_ports(p):
        other = claims.holder(port)
        if other is not None:
            raise StartError(
                f"another run-local (pid {other.pid}, app on port {other.app_port}) uses the "
                f"services these settings name (port {port}); a second app would take its "
                "jobs: use that one, stop it first, or give this run other ports for "
                "AzureWebJobsStorage and TWILIO_API_BASE_URL (--settings)")


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
                                         started=started, location=p.data_dir)
        ports = azurite.ports
        prepare_storage(p, f"Azurite on 127.0.0.1:{ports['queue']}")
        kept = f"data {_rel(p.data_dir)}/, kept across runs" if p.data_dir else "in memory"
        lines.append(f"storage   Azurite on 127.0.0.1:{ports['blob']}, {ports['queue']}, "
                     f"{ports['table']} (pid {azurite.pid}, {kept}; log "
                     f"{_rel(azurite.log_path)})")
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


def empty_data(data_dir: Path) -> int:
    """Remove Azurite's data from `data_dir` (nothing else there); how many entries went."""
    removed = 0
    if data_dir.is_dir():
        for entry in data_dir.iterdir():
            if AZURITE_DATA.match(entry.name):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
    return removed


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
    # From here on, Ctrl-C (or SIGTERM, or the terminal closing) stops what was started,
    # then ends the run.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    parser = argparse.ArgumentParser(prog="scripts/run-local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=APP_PORT, help="the app's port (7071)")
    parser.add_argument("--settings", type=Path,
                        help="a local.settings.json to read (default: the repository's)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".devhost",
                        help="where the services' logs go (default .devhost/)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="where the Azurite started here keeps its data across runs "
                             "(default .azurite/, git-ignored)")
    parser.add_argument("--fresh", action="store_true",
                        help="start that Azurite empty: removes its data (queues, jobs, dead "
                             "letters) from --data-dir first")
    args = parser.parse_args(argv)
    started = Started()
    claims = port_claims.PortClaims()
    try:
        if args.settings:
            os.environ[SETTINGS_FILE_VARIABLE] = str(args.settings.resolve())
        env = load_settings()
        p = plan(env, args.port)
        p.data_dir, p.fresh = args.data_dir.resolve(), args.fresh
        check_ports(p, claims)
        claims.claim(service_ports(p), p.app_port)
        say(f"Settings: environment, then {_rel(settings_file())}"
            f"{'' if settings_file().exists() else ' (none)'}, then the local defaults")
        if p.fresh:
            gone = empty_data(p.data_dir)
            say(f"Fresh start: {'removed' if gone else 'no'} local data in "
                f"{_rel(p.data_dir)}/ (queues, jobs table, dead letters).")
        lines = start(p, args.log_dir, started)
        say("\nReady:\n" + "\n".join(f"  {line}" for line in lines + p.summary))
        say("\nTry, in another terminal:\n" + "\n".join(
            f"  {cmd}" for cmd in try_commands(env, args.port)))
        say("\nCtrl-C stops everything started here.")
        watch(started)
        return 0  # not reached: watch returns only by an exception
    except KeyboardInterrupt:
        say("\nInterrupted.", err=True)
        return 130
    except (StartError, services.ServiceFailed, OSError, ValueError) as exc:
        say(f"run-local: {exc}", err=True)
        return 1
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if started:
            say(f"Stopping {', '.join(s.name for s in reversed(started))}.", err=True)
        for svc in reversed(started):
            svc.stop()
        claims.release()


if __name__ == "__main__":
    sys.exit(main())
