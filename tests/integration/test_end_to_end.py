"""End to end: the dev host serving function_app over HTTP and from Azurite's queue, with
Prism (behind a recorder) as Twilio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost import services
from shared.ledger import job_partition
from tests.doubles import TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, env, form_body, sign

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(storage_env: dict[str, str], prism_recorder: TwilioDouble,
        tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = services.free_port()
    app_env = {**os.environ, **env(TWILIO_API_BASE_URL=prism_recorder.url, **storage_env)}
    log = (tmp_path / "devhost.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "devhost", "--port", str(port)], cwd=ROOT,
                            env=app_env, stdout=log, stderr=subprocess.STDOUT)
    svc = services.Service("devhost", proc, {"http": port}, tmp_path / "devhost.log")
    svc.wait_ready(30, port)
    yield {"url": f"http://127.0.0.1:{port}", "env": app_env, "log": svc.log_path}
    svc.stop()


def queue(app: dict[str, Any], suffix: str = "", **kwargs: Any) -> QueueClient:
    name = app["env"]["OUTBOUND_QUEUE_NAME"] + suffix
    client = QueueClient.from_connection_string(app["env"]["AzureWebJobsStorage"], name,
                                                **kwargs)
    try:
        client.create_queue()
    except Exception:  # noqa: BLE001 - exists already
        pass
    return client


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_signed_webhook_over_http(app: dict[str, Any]) -> None:
    url = app["url"] + "/api/sms"
    form = {"MessageSid": "SM" + "2" * 32, "From": "+15551234567", "To": "+15005550006",
            "Body": "hello"}
    req = urllib.request.Request(url, data=form_body(form), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(url, form)})
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status == 200
        assert res.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert res.read().decode() == (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks for your message. '
            "We will get back to you soon.</Message></Response>")
    req = urllib.request.Request(url, data=form_body(form), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "forged"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403


def test_plain_and_base64_jobs_each_reach_prism_once(app: dict[str, Any],
                                                     prism_recorder: TwilioDouble) -> None:
    plain = {"type": "sms", "to": "+15551234567", "body": "plain"}
    encoded = {"type": "call", "to": "+15551234567", "say": "base64"}
    queue(app).send_message(json.dumps(plain))  # QueueClient's default: plain text
    queue(app, message_encode_policy=TextBase64EncodePolicy()).send_message(json.dumps(encoded))
    wait_for(lambda: len(prism_recorder.creates()) >= 2)
    time.sleep(1.0)  # time for a duplicate to show, if there were one
    creates = prism_recorder.creates()
    assert sorted(r.path.rsplit("/", 1)[1] for r in creates) == ["Calls.json", "Messages.json"]
    assert all(r.status == 201 for r in creates)
    assert [r.form["Body"] for r in prism_recorder.creates("Messages")] == [["plain"]]
    wait_for(lambda: queue(app).get_queue_properties().approximate_message_count == 0)
    assert queue(app, "-rejected").get_queue_properties().approximate_message_count == 0


def test_bad_job_lands_in_rejected_with_reason(app: dict[str, Any],
                                               prism_recorder: TwilioDouble) -> None:
    bad = '{"type": "sms", "to": "5551234567", "body": "x"}'
    queue(app).send_message(bad)
    rejected = queue(app, "-rejected")
    messages = wait_for(lambda: rejected.peek_messages(max_messages=5))
    letter = json.loads(messages[0].content)
    assert letter["original"] == bad
    assert letter["reason"] == 'field \'to\': "5551234567" is not an E.164 number like +15551234567'
    assert prism_recorder.creates() == []
    assert AUTH_TOKEN not in app["log"].read_text()


def post_signed(app: dict[str, Any], path: str, form: dict[str, str],
                headers: dict[str, str] | None = None) -> tuple[int, str]:
    url = app["url"] + path
    req = urllib.request.Request(url, data=form_body(form), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(url, form), **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.status, res.read().decode()


def test_inbound_sms_and_status_events_on_azurite(app: dict[str, Any],
                                                  prism_recorder: TwilioDouble) -> None:
    sms = {"MessageSid": "SM" + "8" * 32, "From": "+15551234567", "To": "+15005550006",
           "Body": "hello", "NumMedia": "0"}
    for _ in range(2):  # Twilio's retry of the same webhook
        status, _ = post_signed(app, "/api/sms", sms, {"I-Twilio-Idempotency-Token": "tok-e2e"})
        assert status == 200
    inbound = QueueClient.from_connection_string(app["env"]["AzureWebJobsStorage"],
                                                 app["env"]["INBOUND_QUEUE_NAME"])
    events = wait_for(lambda: inbound.peek_messages(max_messages=32))
    assert [json.loads(m.content)["event_id"] for m in events] == ["SM" + "8" * 32]

    # A job is sent; its status callback lands as an event and on the job's row.
    queue(app).send_message(json.dumps({"id": "e2e-job-1", "type": "sms",
                                        "to": "+15551234567", "body": "hi"}))
    wait_for(lambda: prism_recorder.creates("Messages"))
    status, _ = post_signed(app, "/api/status?job=e2e-job-1",
                            {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"})
    assert status == 204
    status_q = QueueClient.from_connection_string(app["env"]["AzureWebJobsStorage"],
                                                  app["env"]["STATUS_QUEUE_NAME"])
    [event] = wait_for(lambda: status_q.peek_messages(max_messages=32))
    assert json.loads(event.content)["job_id"] == "e2e-job-1"
    from azure.data.tables import TableClient

    table = TableClient.from_connection_string(app["env"]["AzureWebJobsStorage"],
                                               app["env"]["JOBS_TABLE_NAME"])
    # The status callback and the sender's own "sent" record race: wait for both.
    row = wait_for(lambda: (r := table.get_entity(job_partition("e2e-job-1"), "e2e-job-1")).get("status") == "sent"
                   and r.get("twilio_status") and r)
    assert (row["status"], row["twilio_status"]) == ("sent", "delivered")


def test_voicemail_notification_is_sent_through_the_queue(app: dict[str, Any],
                                                          prism_recorder: TwilioDouble) -> None:
    call = {"CallSid": "CA" + "9" * 32, "AccountSid": ACCOUNT_SID, "From": "+15551234567",
            "To": "+15005550006"}
    status, twiml = post_signed(app, "/api/twiml/voicemail?Notify=%2B15559990000&Transcribe=false",
                                call)
    assert status == 200 and "<Record" in twiml
    record_url = twiml.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    path = record_url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    status, _ = post_signed(app, "/" + path, {**call, "RecordingSid": "RE" + "9" * 32,
                                              "RecordingUrl": "https://api.twilio.com/r/RE9"})
    assert status == 200
    [sent] = wait_for(lambda: [r for r in prism_recorder.creates("Messages") if r.status])
    assert sent.status == 201
    assert sent.form["To"] == ["+15559990000"]
    # The link is built from the SIDs as Twilio builds it, not taken from RecordingUrl.
    assert sent.form["Body"] == [
        "New voicemail from (555) 123-4567: https://api.twilio.com/2010-04-01/Accounts/"
        f"{ACCOUNT_SID}/Recordings/RE{'9' * 32}.mp3"]
