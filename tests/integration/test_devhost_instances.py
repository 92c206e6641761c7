"""Several dev hosts (`python -m devhost --port N`, no run-local) serve the same queues at
once, as scaled-out instances of the Functions host do: each starts on the shared queues,
and every job is sent once, by one of them."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost import services
from tests.doubles import TwilioDouble
from tests.integration.run_local_helpers import ROOT

INSTANCES = 3
JOBS = 60


def test_three_dev_hosts_share_the_outbound_queue(tmp_path: Path, storage_env: dict[str, str],
                                                  prism_recorder: TwilioDouble) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "Azure"))},
           **storage_env, "TWILIO_API_BASE_URL": prism_recorder.url,
           "LOCAL_SETTINGS_FILE": str(tmp_path / "none.json"), "LOG_LEVEL": "INFO"}
    hosts = []
    try:
        for i in range(INSTANCES):
            port = services.free_port()
            svc = services.spawn(f"dev host {i}", [sys.executable, "-m", "devhost", "--port",
                                                   str(port)],
                                 log_path=tmp_path / f"host-{i}.log", ports={"http": port},
                                 env=env, cwd=ROOT)
            hosts.append(svc)
        for svc in hosts:  # all started at once: each made the queues or found them made
            svc.wait_ready(60, svc.ports["http"])
        queue = QueueClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                                   storage_env["OUTBOUND_QUEUE_NAME"])
        with contextlib.suppress(ResourceExistsError):  # the hosts may not have made it yet
            queue.create_queue()
        for n in range(JOBS):
            queue.send_message(json.dumps({"id": f"inst-{n}", "type": "sms",
                                           "to": "+15551234567", "body": f"Job {n}"}))
        table = TableClient.from_connection_string(storage_env["AzureWebJobsStorage"],
                                                   storage_env["JOBS_TABLE_NAME"])
        deadline = time.monotonic() + 90
        while len([e for e in table.query_entities("status eq 'sent'")]) < JOBS:
            assert time.monotonic() < deadline, "not every job was sent"
            assert all(svc.exited() is None for svc in hosts)
            time.sleep(0.5)
    finally:
        for svc in hosts:
            svc.stop()
    assert len(prism_recorder.sent()) == JOBS  # each job once
    logs = [(tmp_path / f"host-{i}.log").read_text() for i in range(INSTANCES)]
    sent = [log.count(": sent as SM") for log in logs]
    assert sum(sent) == JOBS and len([n for n in sent if n]) >= 2, sent
    assert not any("Traceback" in log for log in logs)
