"""examples/producer, another Function app, runs on the dev host as written: a request to its
endpoint puts a job on our outbound queue through its queue output binding (base64, its
host.json's default), and our app, on run-local, sends it through the Twilio double."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from azure.storage.queue import QueueClient

from devhost import services
from tests.integration.run_local_helpers import READY, ROOT, Ports, RunLocal, local_env

EXAMPLE = ROOT / "examples" / "producer"


def start_producer(tmp_path: Path, port: int, storage: str, queue: str) -> services.Service:
    """`python -m devhost --app examples/producer`, with the settings its
    local.settings.json.example names."""
    example = json.loads((EXAMPLE / "local.settings.json.example").read_text())["Values"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobs")},
           **example, "AzureWebJobsStorage": storage, "TwilioBackend": storage,
           "TWILIO_OUTBOUND_QUEUE": queue}
    svc = services.spawn("producer", [sys.executable, "-m", "devhost", "--app", str(EXAMPLE),
                                      "--port", str(port)],
                         log_path=tmp_path / f"producer-{port}.log", ports={"http": port},
                         env=env, cwd=ROOT)
    svc.wait_ready(60, port)
    return svc


def post(port: int, body: bytes) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/notify", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_request_to_the_producer_ends_as_a_sent_job(tmp_path: Path) -> None:
    ports = Ports.free()
    env = local_env(tmp_path, ports)
    run = RunLocal.start(env, ports, tmp_path / "logs")
    try:
        run.wait_for(READY)
        storage = env["AzureWebJobsStorage"]
        job = {"id": "order-1042", "to": "+15551234567", "body": "Order 1042 shipped."}

        # What the binding writes, seen on a queue nobody reads: base64 JSON.
        side = f"{env['OUTBOUND_QUEUE_NAME']}-peek"
        producer = start_producer(tmp_path, services.free_port(), storage, side)
        try:
            assert post(producer.ports["http"], json.dumps(job).encode()) == \
                (202, {"job": "order-1042"})
            written = [m.content for m in QueueClient.from_connection_string(
                storage, side).peek_messages(5)]
        finally:
            producer.stop()
        assert [json.loads(base64.b64decode(w)) for w in written] == [
            {"id": "order-1042", "type": "sms", "to": "+15551234567",
             "body": "Order 1042 shipped."}]

        # On our outbound queue: our app (messageEncoding none) reads it and sends it.
        producer = start_producer(tmp_path, services.free_port(), storage,
                                  env["OUTBOUND_QUEUE_NAME"])
        try:
            port = producer.ports["http"]
            assert post(port, b"not json") == (400, {
                "error": 'send a JSON object: {"to": "+15551234567", "body": "..."}'})
            assert post(port, b'{"to": "+15551234567"}') == (400, {
                "error": "field 'body': a non-empty string is required"})
            assert post(port, json.dumps(job).encode()) == (202, {"job": "order-1042"})
            deadline = time.monotonic() + 30
            while True:
                shown = subprocess.run([sys.executable, "-m", "ops", "jobs", "show",
                                        "order-1042", "--json"], cwd=ROOT, env=env,
                                       capture_output=True, text=True, timeout=60)
                row = json.loads(shown.stdout) if shown.returncode == 0 else {}
                if row.get("status") == "sent":
                    break
                assert time.monotonic() < deadline, shown.stdout + shown.stderr
                time.sleep(0.3)
            assert row["sid"].startswith("SM")
        finally:
            producer.stop()
        log = (tmp_path / f"producer-{port}.log").read_text()
        assert f"  notify: [POST] http://127.0.0.1:{port}/api/notify" in log.splitlines()
        assert "Traceback" not in log
    finally:
        run.stop()
    assert "Traceback" not in run.output
