"""End to end, for each sending option: the job goes on Azurite's queue, the dev host runs
function_app's queue trigger, and Prism (Twilio's official spec, behind a recorder) receives
and accepts the request; bad combinations land in `-rejected` with a reason naming the
field; the status, AMD and recording callbacks land on the status queue and the job's row."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost import services
from shared.ledger import job_partition
from tests.doubles import TwilioDouble
from tests.helpers import FROM, env
from tests.integration.test_end_to_end import post_signed, queue, wait_for

ROOT = Path(__file__).resolve().parents[2]
TO = "+15551234567"
MG = "MG" + "0123456789abcdef" * 2
HX = "HX" + "0123456789abcdef" * 2
WA = "whatsapp:+15551234567"
WA_FROM = "whatsapp:+15005550006"


@pytest.fixture
def start_app(storage_env: dict[str, str], prism_recorder: TwilioDouble,
              tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    """Start the dev host with extra settings; `WEBHOOK_BASE_URL=""` means its own URL."""
    started: list[services.Service] = []

    def start(**settings: str) -> dict[str, Any]:
        port = services.free_port()
        url = f"http://127.0.0.1:{port}"
        if settings.get("WEBHOOK_BASE_URL") == "":
            settings["WEBHOOK_BASE_URL"] = url
        app_env = {**os.environ, **env(TWILIO_API_BASE_URL=prism_recorder.url, **storage_env,
                                       **settings)}
        log_path = tmp_path / f"devhost-{port}.log"
        proc = subprocess.Popen([sys.executable, "-m", "devhost", "--port", str(port)],
                                cwd=ROOT, env=app_env, stdout=log_path.open("wb"),
                                stderr=subprocess.STDOUT)
        svc = services.Service("devhost", proc, {"http": port}, log_path)
        started.append(svc)
        svc.wait_ready(30, port)
        return {"url": url, "env": app_env, "log": log_path}

    yield start
    for svc in started:
        svc.stop()


def enqueue(app: dict[str, Any], *docs: dict[str, Any]) -> None:
    for doc in docs:
        queue(app).send_message(json.dumps(doc))


def row(app: dict[str, Any], key: str) -> dict[str, Any]:
    table = TableClient.from_connection_string(app["env"]["AzureWebJobsStorage"],
                                               app["env"]["JOBS_TABLE_NAME"])
    return dict(table.get_entity(job_partition(key), key))


def status_events(app: dict[str, Any]) -> list[dict[str, Any]]:
    q = QueueClient.from_connection_string(app["env"]["AzureWebJobsStorage"],
                                           app["env"]["STATUS_QUEUE_NAME"])
    return [json.loads(m.content) for m in q.peek_messages(max_messages=32)]


def test_every_sending_option_reaches_prism_through_the_queue(
        start_app: Callable[..., dict[str, Any]], prism_recorder: TwilioDouble) -> None:
    app = start_app(TWILIO_MESSAGING_SERVICE_SID=MG, WEBHOOK_BASE_URL="")
    send_at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
    local = send_at.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    enqueue(app,
            {"id": "e2e-ms", "type": "sms", "to": TO, "body": "Sale today",
             "shorten_urls": True, "validity_period": 600},
            {"id": "e2e-from", "type": "sms", "to": TO, "from": FROM, "body": "Plain SMS"},
            {"id": "e2e-reminder", "type": "sms", "to": TO, "send_at": local.isoformat(),
             "body": "Reminder: your appointment is at 10:00 today."},
            {"id": "e2e-wa", "type": "sms", "to": WA, "from": WA_FROM, "content_sid": HX,
             "content_variables": {"1": "Ada", "2": "1042"}},
            {"id": "e2e-amd", "type": "call", "to": TO, "say": "Your appointment is tomorrow.",
             "machine_detection": "DetectMessageEnd", "async_amd": True, "timeout": 25,
             "time_limit": 600, "record": True, "caller_id": FROM},
            # Twilio ignores MachineDetection beside SendDigits: a call has one or the other.
            {"id": "e2e-digits", "type": "call", "to": TO, "url": "https://a.example/twiml",
             "send_digits": "ww1#"})
    creates = wait_for(lambda: len(c := [r for r in prism_recorder.creates() if r.status]) >= 6
                       and c)
    route = app["url"] + "/api/status?job="
    by_job = {r.form["StatusCallback"][0].rsplit("=", 1)[1]: r for r in creates}
    assert {k: r.status for k, r in by_job.items()} == dict.fromkeys(
        ["e2e-ms", "e2e-from", "e2e-reminder", "e2e-wa", "e2e-amd", "e2e-digits"], 201)
    assert by_job["e2e-ms"].form == {  # the setting's Messaging Service, no From
        "To": [TO], "MessagingServiceSid": [MG], "Body": ["Sale today"],
        "ShortenUrls": ["true"], "ValidityPeriod": ["600"],
        "StatusCallback": [route + "e2e-ms"]}
    assert by_job["e2e-from"].form == {  # a job's own From is used as given
        "To": [TO], "From": [FROM], "Body": ["Plain SMS"],
        "StatusCallback": [route + "e2e-from"]}
    assert by_job["e2e-reminder"].form == {
        "To": [TO], "MessagingServiceSid": [MG],
        "Body": ["Reminder: your appointment is at 10:00 today."], "ScheduleType": ["fixed"],
        "SendAt": [send_at.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "StatusCallback": [route + "e2e-reminder"]}
    assert by_job["e2e-wa"].form == {
        "To": [WA], "From": [WA_FROM], "ContentSid": [HX],
        "ContentVariables": ['{"1":"Ada","2":"1042"}'], "StatusCallback": [route + "e2e-wa"]}
    assert by_job["e2e-amd"].form == {
        "To": [TO], "From": [FROM], "StatusCallback": [route + "e2e-amd"],
        "Twiml": ['<?xml version="1.0" encoding="UTF-8"?><Response><Say>Your appointment is '
                  'tomorrow.</Say></Response>'],
        "MachineDetection": ["DetectMessageEnd"], "AsyncAmd": ["true"],
        "AsyncAmdStatusCallback": [route + "e2e-amd"], "Timeout": ["25"],
        "TimeLimit": ["600"], "Record": ["true"], "RecordingStatusCallback": [route + "e2e-amd"],
        "CallerId": [FROM]}
    assert by_job["e2e-digits"].form == {
        "To": [TO], "From": [FROM], "Url": ["https://a.example/twiml"],
        "StatusCallback": [route + "e2e-digits"], "SendDigits": ["ww1#"]}
    for key in by_job:
        assert wait_for(lambda k=key: row(app, k).get("status") == "sent")

    # Twilio's callbacks for those jobs: scheduled, the AMD result, the recording.
    call_sid = "CA" + "a" * 32
    posts = [("e2e-reminder", {"MessageSid": "SM" + "a" * 32, "MessageStatus": "scheduled"}),
             ("e2e-amd", {"CallSid": call_sid, "AnsweredBy": "machine_end_beep",
                          "MachineDetectionDuration": "3900"}),
             ("e2e-amd", {"CallSid": call_sid, "RecordingSid": "RE" + "b" * 32,
                          "RecordingStatus": "completed", "RecordingDuration": "12",
                          "RecordingUrl": "https://api.twilio.com/Recordings/RE" + "b" * 32})]
    for job_id, form in posts:
        assert post_signed(app, f"/api/status?job={job_id}", form)[0] == 204
    events = wait_for(lambda: len(status_events(app)) >= 3 and status_events(app))
    assert sorted((e["type"], e["job_id"], e["status"]) for e in events) == [
        ("call.amd", "e2e-amd", "machine_end_beep"),
        ("call.recording", "e2e-amd", "completed"),
        ("message.status", "e2e-reminder", "scheduled")]
    amd = wait_for(lambda: (r := row(app, "e2e-amd")).get("recording_status") and
                   r.get("answered_by") and r)
    assert (amd["status"], amd["answered_by"], amd["recording_status"],
            amd["recording_sid"]) == ("sent", "machine_end_beep", "completed", "RE" + "b" * 32)
    assert wait_for(lambda: row(app, "e2e-reminder").get("twilio_status")) == "scheduled"


def test_bad_combinations_land_in_rejected_naming_the_field(
        start_app: Callable[..., dict[str, Any]], prism_recorder: TwilioDouble) -> None:
    app = start_app()  # no Messaging Service, no WEBHOOK_BASE_URL
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    bad = {
        "no-service": ({"type": "sms", "to": TO, "body": "x", "send_at": later},
                       "invalid_job", "field 'send_at': needs a Messaging Service: give "
                       "'messaging_service_sid' or set TWILIO_MESSAGING_SERVICE_SID"),
        "too-soon": ({"type": "sms", "to": TO, "body": "x", "send_at": soon,
                      "messaging_service_sid": MG},
                     "invalid_job", "Twilio schedules messages 15 minutes to 35 days ahead"),
        "shorten": ({"type": "sms", "to": TO, "body": "x", "shorten_urls": True},
                    "invalid_job", "field 'shorten_urls': needs a Messaging Service"),
        "wa-sms-from": ({"type": "sms", "to": WA, "from": FROM, "body": "x"}, "invalid_job",
                        f'field \'from\': "{FROM}" is not a WhatsApp address like '
                        "whatsapp:+15551234567 (a job to a whatsapp: recipient is sent on "
                        "WhatsApp, from a WhatsApp sender)"),
        "wa-default-from": ({"type": "sms", "to": WA, "body": "x"}, "no_sender",
                            "field 'from': a WhatsApp job needs a WhatsApp sender"),
        "wa-media": ({"type": "sms", "to": WA, "from": WA_FROM,
                      "media_url": ["https://a.example/1.png", "https://a.example/2.png"]},
                     "invalid_job",
                     "field 'media_url': WhatsApp takes one media URL per message, got 2"),
        "sms-wa-from": ({"type": "sms", "to": TO, "from": WA_FROM, "body": "x"}, "invalid_job",
                        f'field \'from\': "{WA_FROM}" is not an E.164 number'),
        "template-body": ({"type": "sms", "to": WA, "from": WA_FROM, "content_sid": HX,
                           "body": "x"}, "invalid_job",
                          "field(s) 'body' not allowed with 'content_sid'"),
        "variables": ({"type": "sms", "to": TO, "body": "x", "content_variables": {"1": "a"}},
                      "invalid_job", "'content_sid' is required with 'content_variables'"),
        "amd-alone": ({"type": "call", "to": TO, "say": "x", "async_amd": True},
                      "invalid_job", "'machine_detection' is required with 'async_amd'"),
        "amd-nowhere": ({"type": "call", "to": TO, "say": "x", "machine_detection": "Enable",
                         "async_amd": True}, "invalid_job",
                        "field 'async_amd': the result needs somewhere to go"),
        "amd-digits": ({"type": "call", "to": TO, "say": "x", "machine_detection": "Enable",
                        "send_digits": "1"}, "invalid_job",
                       "field(s) 'machine_detection' not allowed with 'send_digits'"),
        "call-wa": ({"type": "call", "to": WA, "say": "x"}, "invalid_job",
                    f'field \'to\': "{WA}" is not an E.164 number like +15551234567'),
    }
    enqueue(app, *({**doc, "id": f"bad-{name}"} for name, (doc, _, _) in bad.items()))
    rejected = queue(app, "-rejected")
    letters = wait_for(lambda: len(m := rejected.peek_messages(max_messages=32)) >= len(bad)
                       and m)
    by_id = {json.loads(json.loads(m.content)["original"])["id"]: json.loads(m.content)
             for m in letters}
    for name, (_, kind, reason) in bad.items():
        letter = by_id[f"bad-{name}"]
        assert (letter["kind"], reason in letter["reason"]) == (kind, True), (name, letter)
    assert prism_recorder.creates() == []
