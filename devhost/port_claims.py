"""The service ports each running `scripts/run-local` uses (Azurite's, the Twilio double's),
so a second run-local can tell them from an Azurite someone started by hand: it would share
the first one's queues and data, and refuses instead.

One small file per port, in a folder per user on this machine (ports are machine-wide);
a claim whose run-local has ended, however it ended, no longer counts.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"devhost-run-local-{os.getuid()}"


@dataclass(frozen=True)
class Claim:
    pid: int
    app_port: int


def _running_run_local(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"devhost.run_local" in cmdline  # not a new process that took the PID


class PortClaims:
    def __init__(self, folder: Path | None = None, pid: int | None = None) -> None:
        self.folder = folder or default_folder()
        self.pid = os.getpid() if pid is None else pid
        self.mine: list[int] = []

    def holder(self, port: int) -> Claim | None:
        """The other running run-local that uses `port`, if any."""
        try:
            doc = json.loads((self.folder / f"{port}.json").read_text())
            claim = Claim(int(doc["pid"]), int(doc["app_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if claim.pid == self.pid or not _running_run_local(claim.pid):
            return None
        return claim

    def claim(self, ports: Iterable[int], app_port: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for port in ports:
            path = self.folder / f"{port}.json"
            tmp = path.with_suffix(f".{self.pid}.tmp")
            tmp.write_text(json.dumps({"pid": self.pid, "app_port": app_port}))
            os.replace(tmp, path)
            self.mine.append(port)

    def release(self) -> None:
        for port in self.mine:
            path = self.folder / f"{port}.json"
            try:
                if json.loads(path.read_text()).get("pid") == self.pid:
                    path.unlink()
            except (OSError, ValueError):
                pass
        self.mine = []
