"""`python -m devhost`: serve function_app locally (HTTP + queue triggers) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from devhost.host import ROOT, DevHost, load_settings


async def main(host: str, port: int) -> None:
    os.environ.update(load_settings())  # as `func start` does with local.settings.json
    sys.path.insert(0, str(ROOT))
    import function_app

    host_json = json.loads((ROOT / "host.json").read_text())
    dev = DevHost(function_app.app, host_json, os.environ)
    await dev.start(host, port)
    for fn in dev.http:
        t = fn.get_trigger()
        methods = ",".join(str(getattr(m, "value", m)) for m in t.methods or [])
        print(f"  {fn.get_function_name()}: [{methods}] http://{host}:{port}/"
              f"{dev.route_prefix}/{t.route}", flush=True)
    for fn in dev.queues:
        print(f"  {fn.get_function_name()}: queue {fn.get_trigger().queue_name}", flush=True)
    print(f"devhost listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await dev.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    asyncio.run(main(args.host, args.port))
