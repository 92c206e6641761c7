"""`python -m bench.instance --port P [--host-json JSON] [--app-root DIR]`: one instance of
the app (the dev host running `function_app` from DIR) in its own process, its settings from
the environment, its queue options from host.json with JSON's `extensions.queues` laid over
them (as `AzureFunctionsJobHost__extensions__queues__*` app settings do in Azure). Prints
`ready` once it serves; SIGTERM stops it. Several on one queue are several instances."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def serve(app_root: Path, port: int, queues: dict[str, object]) -> None:
    sys.path.insert(0, str(app_root))
    import function_app
    from devhost.host import DevHost

    host_json = json.loads((app_root / "host.json").read_text())
    host_json.setdefault("extensions", {}).setdefault("queues", {}).update(queues)
    dev = DevHost(function_app.app, host_json, os.environ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await dev.start("127.0.0.1", port)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await dev.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instance", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host-json", default="{}", help="extensions.queues overrides, JSON")
    parser.add_argument("--app-root", type=Path, default=ROOT,
                        help="the checkout whose function_app runs (to compare versions)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.app_root.resolve(), args.port, json.loads(args.host_json)))


if __name__ == "__main__":
    main()
