"""`python -m devhost.run_local` (scripts/run-local): the app on this machine, on defaults.

Starts Azurite and Prism (Twilio's API double) unless they already listen on their usual
ports, then the app: `func start` where Azure Functions Core Tools are installed, else the
dev host. Settings come from the environment, then local.settings.json, then the local
defaults below. Ctrl-C stops everything this started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from devhost import services
from devhost.host import ROOT, load_settings, user_settings

AZURITE_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
PRISM_PORT = 4010
APP_PORT = 7071


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    log_dir = ROOT / ".devhost"
    started: list[services.Service] = []
    user = user_settings()
    env = load_settings()

    try:
        storage = user.get("AzureWebJobsStorage", "UseDevelopmentStorage=true")
        if "UseDevelopmentStorage=true" not in storage and "127.0.0.1" not in storage:
            print("Storage: AzureWebJobsStorage from your settings")
        elif services.port_open(AZURITE_PORTS["queue"]):
            print(f"Azurite: using the one already on 127.0.0.1:{AZURITE_PORTS['queue']}")
        else:
            started.append(services.start_azurite(log_dir, **AZURITE_PORTS))
            print(f"Azurite: started (log {log_dir / 'azurite.log'})")
        if "TWILIO_API_BASE_URL" not in user:  # the default: Prism on PRISM_PORT
            if services.port_open(PRISM_PORT):
                print(f"Twilio API double: using what listens on 127.0.0.1:{PRISM_PORT}")
            else:
                started.append(services.start_prism(log_dir, port=PRISM_PORT))
                print(f"Prism (Twilio API double): started (log {log_dir / 'prism.log'})")
        if services.port_open(APP_PORT):
            print(f"Port {APP_PORT} is in use: stop what runs there first.", file=sys.stderr)
            return 1

        func = shutil.which("func")
        cmd = ([func, "start", "--port", str(APP_PORT)] if func else
               [sys.executable, "-m", "devhost", "--port", str(APP_PORT)])
        print(f"App: {'func start' if func else 'dev host (Core Tools not installed)'}")
        app = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
        started.append(services.Service("app", app, {"http": APP_PORT}))
        started[-1].wait_ready(120, APP_PORT)
        base = f"http://127.0.0.1:{APP_PORT}/api"
        py = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) \
            else sys.executable
        print(f"""
Ready on {base}/ (webhooks need an X-Twilio-Signature; health: {base}/health).
Try, in another terminal:
  {py} -m devhost.webhook /api/sms From=+15551234567 Body=hello
  {py} -m devhost.enqueue --sms +15551234567 "Hello from the queue"

Ctrl-C stops everything started here.
""", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        while app.poll() is None:
            time.sleep(0.5)
        return app.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        for svc in reversed(started):
            svc.stop()


if __name__ == "__main__":
    sys.exit(main())
