"""Running `scripts/run-local` as a person would, on free loopback ports, for the start-up
tests and the README walk."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devhost import services

ROOT = Path(__file__).resolve().parents[2]
READY = "Ctrl-C stops everything started here."


@dataclass
class Ports:
    blob: int
    queue: int
    table: int
    twilio: int
    app: int

    @classmethod
    def free(cls) -> Ports:
        return cls(*(services.free_port() for _ in range(5)))


def local_env(tmp_path: Path, ports: Ports, **extra: str) -> dict[str, str]:
    """The settings a new user has (no local.settings.json), on this test's ports and a
    queue and table of its own."""
    suffix = uuid.uuid4().hex[:8]
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobsStorage",
                                                                     "TWILIO_", "WEBHOOK_"))}
    return {**keep, "LOCAL_SETTINGS_FILE": str(tmp_path / "no-local.settings.json"),
            "AzureWebJobsStorage": services.azurite_connection_string(
                ports.blob, ports.queue, ports.table),
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{ports.twilio}",
            "WEBHOOK_BASE_URL": f"http://127.0.0.1:{ports.app}",
            "OUTBOUND_QUEUE_NAME": f"walk-{suffix}", "JOBS_TABLE_NAME": f"walk{suffix}",
            "INBOUND_QUEUE_NAME": f"walk-in-{suffix}", "STATUS_QUEUE_NAME": f"walk-st-{suffix}",
            **extra}


@dataclass
class RunLocal:
    """`scripts/run-local` in a session of its own, its output collected line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, env: dict[str, str], ports: Ports, log_dir: Path, *args: str,
              data_dir: Path | None = None) -> RunLocal:
        """Its Azurite keeps its data in `data_dir` (default: beside `log_dir`, so a test's
        data is thrown away with its folder)."""
        data_dir = data_dir or log_dir.parent / "azurite-data"
        proc = subprocess.Popen(
            ["scripts/run-local", "--port", str(ports.app), "--log-dir", str(log_dir),
             "--data-dir", str(data_dir), *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True)
        run = cls(proc)
        threading.Thread(target=run._read, daemon=True).start()
        return run

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the last lines
                raise AssertionError(f"run-local exited {self.proc.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in {timeout} s:\n{self.output}")
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        """What a terminal does: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # let the reader thread take the last lines
        return code

    def pids(self) -> dict[str, int]:
        """The processes it said it started."""
        return {m[1]: int(m[2]) for m in re.finditer(r"started (.+?) \(pid (\d+)\)",
                                                     self.output)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.ctrl_c()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
