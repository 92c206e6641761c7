# ruff: noqa: E402 - signal handlers first, so an early Ctrl-C or SIGTERM exits quietly
"""`python -m devhost`: serve a Functions app locally (HTTP, queue and timer triggers, queue
outputs) until Ctrl-C or SIGTERM, either of which ends it cleanly at any moment, start-up
included.

Without --app it serves this project's app with the settings of a local run (environment,
local.settings.json, the local defaults) and needs the services they name to be running
(scripts/run-local starts them). Several may serve the same queues: start each on its own
--port. With --app DIR it serves DIR/function_app.py with DIR/host.json, and settings from the
environment over DIR/local.settings.json.
"""

from __future__ import annotations

import signal
import sys


def _quit(signum: int, _frame: object) -> None:
    # Until the event loop takes over the signals: leave quietly (no traceback).
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _quit)
signal.signal(signal.SIGINT, _quit)

import argparse
import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ops.localsettings import ROOT, file_values, load_settings


def app_settings(app_dir: Path) -> dict[str, str]:
    """The settings the app runs with, as `func start` reads them; raises ValueError."""
    if app_dir == ROOT:
        return load_settings()
    return {**file_values(app_dir / "local.settings.json"), **os.environ}


def check_settings(app_dir: Path, env: Mapping[str, str]) -> None:
    """This project's app checks its settings now, not on the first request."""
    if app_dir == ROOT:
        from shared.settings import Settings

        Settings.from_env(env)


def import_app(app_dir: Path) -> Any:
    sys.path.insert(0, str(app_dir))
    import function_app

    return function_app.app


def banner(dev: Any, host: str, port: int, env: Mapping[str, str]) -> list[str]:
    from devhost.host import resolve

    lines = []
    for fn in dev.http:
        t = fn.get_trigger()
        methods = ",".join(str(getattr(m, "value", m)) for m in t.methods or [])
        lines.append(f"  {fn.get_function_name()}: [{methods}] http://{host}:{port}/"
                     f"{dev.route_prefix}/{t.route}")
    for fn in dev.queues:
        lines.append(f"  {fn.get_function_name()}: queue "
                     f"{resolve(fn.get_trigger().queue_name, env)}")
    for name, (_, timer) in dev.timers.items():
        upcoming = timer.cron.next_after(dev.clock())
        lines.append(f"  {name}: timer {timer.cron.expression} (UTC; next "
                     f"{upcoming:%Y-%m-%d %H:%M:%S}"
                     f"{', and on start-up' if timer.run_on_startup else ''})")
    return lines


async def main(host: str, port: int, app_dir: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        env = app_settings(app_dir)
        os.environ.update(env)  # as `func start` does with local.settings.json
        check_settings(app_dir, os.environ)
    except ValueError as exc:  # SettingsError is one
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    from devhost.host import DevHost, HostError

    try:
        host_json = json.loads((app_dir / "host.json").read_text())
        dev = DevHost(import_app(app_dir), host_json, os.environ)
    except (HostError, OSError, ValueError) as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    try:
        await dev.start(host, port)
    except OSError as exc:
        await dev.stop()
        print(f"devhost: cannot listen on {host}:{port} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    try:
        print("\n".join(banner(dev, host, port, os.environ)), flush=True)
        print(f"devhost listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await dev.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--app", type=Path, default=ROOT,
                        help="the folder of the function_app.py to serve (default: this "
                             "project's)")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main(args.host, args.port, args.app.resolve())))
