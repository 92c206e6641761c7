# ruff: noqa: E402 - signal handlers first, so an early Ctrl-C or SIGTERM exits quietly
"""`python -m devhost`: serve function_app locally (HTTP + queue triggers) until Ctrl-C or
SIGTERM, either of which ends it cleanly at any moment, start-up included."""

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

from ops.localsettings import ROOT, load_settings


async def main(host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    os.environ.update(load_settings())  # as `func start` does with local.settings.json
    from shared.settings import Settings, SettingsError

    try:
        Settings.from_env(os.environ)  # fail now, not on the first request
    except SettingsError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import function_app
    from devhost.host import DevHost, resolve

    host_json = json.loads((ROOT / "host.json").read_text())
    dev = DevHost(function_app.app, host_json, os.environ)
    try:
        await dev.start(host, port)
    except OSError as exc:
        await dev.stop()
        print(f"devhost: cannot listen on {host}:{port} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    try:
        for fn in dev.http:
            t = fn.get_trigger()
            methods = ",".join(str(getattr(m, "value", m)) for m in t.methods or [])
            print(f"  {fn.get_function_name()}: [{methods}] http://{host}:{port}/"
                  f"{dev.route_prefix}/{t.route}", flush=True)
        for fn in dev.queues:
            print(f"  {fn.get_function_name()}: queue "
                  f"{resolve(fn.get_trigger().queue_name, os.environ)}", flush=True)
        print(f"devhost listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await dev.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main(args.host, args.port)))
