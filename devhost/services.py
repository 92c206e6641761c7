"""Local services for development and tests, on 127.0.0.1: Azurite, and the local Twilio API
double (Prism serving Twilio's official OpenAPI spec, behind `devhost.twilio_front`).

Each is a child process in a session and process group of its own: a Ctrl-C in the terminal
reaches the parent only, which then stops its children in order, each with its group (so
what a service started itself goes too). On Linux a child also gets SIGTERM if the parent
dies without stopping it (killed, or its terminal gone).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "node_modules" / ".bin"
TWILIO_SPEC = (ROOT / "node_modules" / "@twilio-alpha" / "mcp" / "twilio-oai" / "spec" / "json"
               / "twilio_api_v2010.json")
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
LOG_TAIL_LINES = 15


class ServiceFailed(RuntimeError):
    """A service did not start or stopped on its own; the message ends with its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, indented, or a note that there is none."""
    if path is None or not path.exists():
        return "  (no log)"
    text = path.read_bytes()[-16384:].decode("utf-8", "replace")
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"  | {line}" for line in tail) if tail else "  (the log is empty)"


_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) \
    if sys.platform == "linux" else None


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a child is started and recorded, so an interrupt can never
    leave a process running that nobody knows to stop."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _child_setup(parent: int) -> Callable[[], None]:
    def setup() -> None:
        """In the child, before exec: a blocked signal mask is inherited, and the child must
        stop on SIGTERM; and SIGTERM when the parent dies (if it already has, stop now)."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:
                os._exit(1)
    return setup


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes] | None
    ports: dict[str, int]
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def failure(self, what: str) -> ServiceFailed:
        if self.log_path is None:  # its output went to this terminal
            return ServiceFailed(f"{self.name} {what}; its output is above")
        return ServiceFailed(f"{self.name} {what} (log {self.log_path}); its last lines:\n"
                             f"{log_tail(self.log_path)}")

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float, ready_port: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exited()
            if code is not None:
                raise self.failure(f"exited with code {code} while starting")
            if port_open(ready_port):
                return
            time.sleep(0.05)
        self.stop()
        raise self.failure(f"did not open port {ready_port} in {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the process this object started, and its process group (its PID: what the
        service started itself), if any."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # Whatever of its group outlived it (the kernel keeps a group's ID while it has
        # members, so this can only reach them).
        _signal_group(self.proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def spawn(name: str, cmd: Sequence[str], *, log_path: Path | None, ports: dict[str, int],
          started: list[Service] | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None, append: bool = False) -> Service:
    """Start `cmd` in a session of its own; output to `log_path` (None: this terminal;
    `append`: after what a previous run wrote there). The service is appended to `started`
    before any interrupt can land."""
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.open("ab" if append else "wb") if log_path is not None else None
    with _signals_deferred():
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT if out else None,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                start_new_session=True,
                                preexec_fn=_child_setup(os.getpid()))
        svc = Service(name, proc, ports, log_path)
        if started is not None:
            started.append(svc)
    if out is not None:
        out.close()  # the child has its own copy
    return svc


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `npm ci` (scripts/bootstrap does)")
    return str(path)


def azurite_connection_string(blob: int, queue: int, table: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{blob}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{queue}/{AZURITE_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{table}/{AZURITE_ACCOUNT};")


def start_azurite(log_dir: Path, *, blob: int = 0, queue: int = 0, table: int = 0,
                  started: list[Service] | None = None, location: Path | None = None,
                  extra_args: Sequence[str] = ()) -> Service:
    """Azurite in memory, or persisted under `location` (so it can be killed and started
    again with its data). Ports 0: free ones. Flags per ../shared/FACTS.md: telemetry off,
    API version check skipped (the SDK is newer than Azurite)."""
    blob, queue, table = blob or free_port(), queue or free_port(), table or free_port()
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    cmd = [_tool("azurite"), "--silent", "--disableTelemetry", *storage,
           "--skipApiVersionCheck",
           "--blobHost", "127.0.0.1", "--blobPort", str(blob),
           "--queueHost", "127.0.0.1", "--queuePort", str(queue),
           "--tableHost", "127.0.0.1", "--tablePort", str(table), *extra_args]
    log_dir.mkdir(parents=True, exist_ok=True)
    svc = spawn("Azurite", cmd, log_path=log_dir / "azurite.log", append=True,
                ports={"blob": blob, "queue": queue, "table": table}, started=started,
                cwd=log_dir)
    for port in (blob, queue, table):
        svc.wait_ready(30, port)
    svc.env = {"AzureWebJobsStorage": azurite_connection_string(blob, queue, table)}
    return svc


def start_prism(log_dir: Path, *, port: int = 0,
                started: list[Service] | None = None) -> Service:
    """Prism mocking Twilio's REST API (api v2010) from Twilio's official OpenAPI spec."""
    port = port or free_port()
    if not TWILIO_SPEC.exists():
        raise FileNotFoundError(f"{TWILIO_SPEC} is missing: run `npm ci`")
    cmd = [_tool("prism"), "mock", "-h", "127.0.0.1", "-p", str(port), str(TWILIO_SPEC)]
    svc = spawn("Prism", cmd, log_path=log_dir / "prism.log", ports={"http": port},
                started=started, env={**os.environ, "NO_UPDATE_NOTIFIER": "1"})
    svc.wait_ready(60, port)
    svc.env = {"TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}"}
    return svc


# `devhost.twilio_front` answers here, so a run can tell it from a bare Prism.
TWILIO_FRONT_MARKER = "/__devhost/twilio-front"


def is_twilio_front(base_url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base_url + TWILIO_FRONT_MARKER, timeout=2) as res:
            return bool(res.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_twilio_front(log_dir: Path, *, upstream: str, port: int = 0,
                       started: list[Service] | None = None) -> Service:
    """`devhost.twilio_front` on `port`, in front of Prism at `upstream`."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "devhost.twilio_front", "--port", str(port),
           "--upstream", upstream]
    svc = spawn("Twilio API front", cmd, log_path=log_dir / "twilio-front.log",
                ports={"http": port}, started=started, cwd=ROOT)
    svc.wait_ready(30, port)
    svc.env = {"TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}"}
    return svc


def start_twilio_double(log_dir: Path, *, port: int = 0,
                        started: list[Service] | None = None) -> list[Service]:
    """The local Twilio API: Prism on a free port, the spec-checked front on `port`."""
    prism = start_prism(log_dir, started=started)
    front = start_twilio_front(log_dir, upstream=prism.env["TWILIO_API_BASE_URL"], port=port,
                               started=started)
    return [prism, front]
