"""How a job becomes a Twilio request: the sender and Messaging Service the settings supply,
the callbacks pointed at the app's status route, and twilio-python's keyword arguments
(whole documents compared)."""

from __future__ import annotations

import datetime as dt

import pytest

from shared import jobs
from shared.jobs import Job, JobRejected, NoSender
from shared.settings import Settings, SettingsError
from shared.twilio_rest import call_params, message_params
from tests.helpers import FROM, env, settings

MG = "MG" + "0123456789abcdef" * 2
MG2 = "MG" + "fedcba9876543210" * 2
HX = "HX" + "0123456789abcdef" * 2
TO = "+15551234567"
WA = "whatsapp:+15551234567"
BASE = "https://func-x.azurewebsites.net"
ROUTE = f"{BASE}/api/status?job=order%2F7"


def prepared(job: Job, **overrides: str) -> Job:
    return jobs.prepare(job, settings(**overrides), "order/7")


# -- sender and Messaging Service --------------------------------------------------------

def test_messaging_service_setting_wins_over_the_from_number() -> None:
    job = prepared(Job("sms", TO, body="hi"), TWILIO_MESSAGING_SERVICE_SID=MG)
    assert (job.from_, job.messaging_service_sid) == (None, MG)


def test_from_number_when_no_messaging_service_is_set() -> None:
    job = prepared(Job("sms", TO, body="hi"))
    assert (job.from_, job.messaging_service_sid) == (FROM, None)


def test_a_jobs_own_sender_is_used_as_given() -> None:
    job = prepared(Job("sms", TO, body="hi", from_="+15557654321"),
                   TWILIO_MESSAGING_SERVICE_SID=MG)
    assert (job.from_, job.messaging_service_sid) == ("+15557654321", None)
    job = prepared(Job("sms", TO, body="hi", messaging_service_sid=MG2),
                   TWILIO_MESSAGING_SERVICE_SID=MG)
    assert (job.from_, job.messaging_service_sid) == (None, MG2)


@pytest.mark.parametrize("option", [{"send_at": "2031-03-01T09:00:00Z"},
                                    {"shorten_urls": True}])
def test_a_job_that_needs_a_service_gets_the_default_one_beside_its_from(option: dict) -> None:
    job = prepared(Job("sms", TO, body="hi", from_="+15557654321", **option),
                   TWILIO_MESSAGING_SERVICE_SID=MG)
    assert (job.from_, job.messaging_service_sid) == ("+15557654321", MG)


@pytest.mark.parametrize("option, field", [({"send_at": "2031-03-01T09:00:00Z"}, "send_at"),
                                           ({"shorten_urls": True}, "shorten_urls")])
def test_scheduling_or_link_shortening_without_a_service_is_refused(option: dict,
                                                                    field: str) -> None:
    with pytest.raises(JobRejected) as err:
        prepared(Job("sms", TO, body="hi", **option))
    assert str(err.value) == (f"field '{field}': needs a Messaging Service: give "
                              "'messaging_service_sid' or set TWILIO_MESSAGING_SERVICE_SID")
    assert not isinstance(err.value, NoSender)


def test_whatsapp_never_falls_back_to_the_sms_number() -> None:
    with pytest.raises(NoSender, match=r"^field 'from': a WhatsApp job needs a WhatsApp sender"):
        prepared(Job("sms", WA, body="hi"))
    job = prepared(Job("sms", WA, body="hi"), TWILIO_MESSAGING_SERVICE_SID=MG)
    assert (job.from_, job.messaging_service_sid) == (None, MG)


def test_no_sender_at_all() -> None:
    with pytest.raises(NoSender, match="TWILIO_FROM_NUMBER is not set"):
        prepared(Job("sms", TO, body="hi"), TWILIO_FROM_NUMBER="")
    with pytest.raises(NoSender, match="TWILIO_FROM_NUMBER is not set"):
        prepared(Job("call", TO, say="hi"), TWILIO_FROM_NUMBER="",
                 TWILIO_MESSAGING_SERVICE_SID=MG)


def test_messaging_service_setting_is_checked() -> None:
    assert Settings.from_env(env(TWILIO_MESSAGING_SERVICE_SID=MG)).messaging_service_sid == MG
    assert Settings.from_env(env(TWILIO_MESSAGING_SERVICE_SID="")).messaging_service_sid is None
    with pytest.raises(SettingsError, match="TWILIO_MESSAGING_SERVICE_SID must be a Messaging "
                                            "Service SID: MG followed by 32 hex digits"):
        Settings.from_env(env(TWILIO_MESSAGING_SERVICE_SID="MG123"))


# -- callbacks -----------------------------------------------------------------------------

def test_callbacks_default_to_the_status_route() -> None:
    job = prepared(Job("call", TO, say="hi", machine_detection="Enable", async_amd=True),
                   WEBHOOK_BASE_URL=BASE)
    assert (job.status_callback, job.async_amd_status_callback) == (ROUTE, ROUTE)
    mine = prepared(Job("call", TO, say="hi", status_callback="https://cb.example/s",
                        machine_detection="Enable", async_amd=True,
                        async_amd_status_callback="https://cb.example/amd"),
                    WEBHOOK_BASE_URL=BASE)
    assert (mine.status_callback, mine.async_amd_status_callback) == (
        "https://cb.example/s", "https://cb.example/amd")


def test_async_amd_needs_somewhere_to_post_its_result() -> None:
    job = Job("call", TO, say="hi", machine_detection="Enable", async_amd=True)
    with pytest.raises(JobRejected, match="^field 'async_amd': the result needs somewhere to go"):
        prepared(job)
    assert prepared(job, WEBHOOK_BASE_URL=BASE).async_amd_status_callback == ROUTE
    own = prepared(Job("call", TO, say="hi", machine_detection="Enable", async_amd=True,
                       status_callback="https://cb.example/s"))
    assert own.async_amd_status_callback == "https://cb.example/s"


# -- request parameters: twilio-python's keyword arguments, as the spec names them -------

def test_message_params_for_every_sms_option() -> None:
    job = Job("sms", TO, from_="+15557654321", messaging_service_sid=MG, body="Sale",
              media_url=("https://a.example/1.png",), status_callback=ROUTE,
              send_at="2031-03-01T09:00:00+01:00", validity_period=600, shorten_urls=True)
    assert message_params(job, job.from_) == {
        "to": TO, "from_": "+15557654321", "messaging_service_sid": MG,
        "status_callback": ROUTE, "body": "Sale", "media_url": ["https://a.example/1.png"],
        "validity_period": 600, "shorten_urls": True, "schedule_type": "fixed",
        # UTC: twilio-python formats a datetime as "...Z" without converting it.
        "send_at": dt.datetime(2031, 3, 1, 8, 0, tzinfo=dt.UTC)}


def test_message_params_for_a_template() -> None:
    job = Job("sms", WA, content_sid=HX, content_variables={"1": "Zoë", "2": "1042"})
    assert message_params(job, "whatsapp:+15557654321") == {
        "to": WA, "from_": "whatsapp:+15557654321", "content_sid": HX,
        "content_variables": '{"1":"Zoë","2":"1042"}'}


def test_call_params_for_every_call_option() -> None:
    job = Job("call", TO, url="https://a.example/twiml", status_callback=ROUTE,
              machine_detection="DetectMessageEnd", machine_detection_timeout=30,
              async_amd=True, async_amd_status_callback=ROUTE, timeout=25, time_limit=600,
              record=True, send_digits="ww1234#", caller_id="+15557654321")
    assert call_params(job, FROM) == {
        "to": TO, "from_": FROM, "status_callback": ROUTE, "url": "https://a.example/twiml",
        "machine_detection": "DetectMessageEnd", "machine_detection_timeout": 30,
        "async_amd": "true", "async_amd_status_callback": ROUTE, "timeout": 25,
        "time_limit": 600, "record": True, "recording_status_callback": ROUTE,
        "send_digits": "ww1234#", "caller_id": "+15557654321"}


def test_call_params_leave_out_what_the_job_does_not_set() -> None:
    assert call_params(Job("call", TO, twiml="<Response/>"), FROM) == {
        "to": TO, "from_": FROM, "twiml": "<Response/>"}
