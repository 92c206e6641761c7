"""Local services for development and tests, on 127.0.0.1: Azurite and Prism (a Twilio API
double serving Twilio's official OpenAPI spec). Each is started as a child process and
stopped by its own PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes] | None
    ports: dict[str, int]
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def wait_ready(self, timeout: float, ready_port: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            if port_open(ready_port):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not open port {ready_port} in {timeout:.0f} s; "
                           f"see {self.log_path}")

    def stop(self) -> None:
        """Stop the process this object started (by its PID), if any."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


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
                  location: Path | None = None) -> Service:
    """Azurite in memory, or persisted under `location` (so it can be killed and started
    again with its data). Ports 0: free ones. Flags per ../shared/FACTS.md: telemetry off,
    API version check skipped (the SDK is newer than Azurite)."""
    blob, queue, table = blob or free_port(), queue or free_port(), table or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "azurite.log"
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    cmd = [_tool("azurite"), "--silent", "--disableTelemetry", *storage,
           "--skipApiVersionCheck",
           "--blobHost", "127.0.0.1", "--blobPort", str(blob),
           "--queueHost", "127.0.0.1", "--queuePort", str(queue),
           "--tableHost", "127.0.0.1", "--tablePort", str(table)]
    proc = subprocess.Popen(cmd, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=log_dir)
    svc = Service("azurite", proc, {"blob": blob, "queue": queue, "table": table}, log_path)
    for port in (blob, queue, table):
        svc.wait_ready(30, port)
    svc.env = {"AzureWebJobsStorage": azurite_connection_string(blob, queue, table)}
    return svc


def start_prism(log_dir: Path, *, port: int = 0) -> Service:
    """Prism mocking Twilio's REST API (api v2010) from Twilio's official OpenAPI spec."""
    port = port or free_port()
    if not TWILIO_SPEC.exists():
        raise FileNotFoundError(f"{TWILIO_SPEC} is missing: run `npm ci`")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "prism.log"
    cmd = [_tool("prism"), "mock", "-h", "127.0.0.1", "-p", str(port), str(TWILIO_SPEC)]
    proc = subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "NO_UPDATE_NOTIFIER": "1"})
    svc = Service("prism", proc, {"http": port}, log_path)
    svc.wait_ready(60, port)
    svc.env = {"TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}"}
    return svc
