"""Every rule of the job schema, each accepted and refused."""

import base64
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import jobs
from shared.jobs import Job, JobRejected

SMS = {"type": "sms", "to": "+15551234567", "body": "hi"}
CALL = {"type": "call", "to": "+15551234567", "say": "hello"}


def rejected(doc: object) -> str:
    with pytest.raises(JobRejected) as err:
        jobs.from_dict(doc)
    return str(err.value)


@pytest.mark.parametrize("doc", jobs.schema()["examples"])
def test_published_examples_are_valid(doc: dict) -> None:
    job = jobs.from_dict(doc)
    assert jobs.to_dict(job) == {k: v for k, v in doc.items() if k != "version"}


def test_minimal_sms() -> None:
    assert jobs.from_dict(SMS) == Job(type="sms", to="+15551234567", body="hi")


def test_full_sms_round_trip() -> None:
    doc = {**SMS, "id": "order-1", "from": "+15557654321", "status_callback": "https://a.b/s",
           "media_url": ["https://a.b/1.png"], "version": 1}
    job = jobs.from_dict(doc)
    assert job.media_url == ("https://a.b/1.png",)
    assert job.from_ == "+15557654321"


def test_mms_without_body() -> None:
    assert jobs.from_dict({"type": "sms", "to": "+15551234567",
                           "media_url": ["https://a.b/c.jpg"]}).body is None


@pytest.mark.parametrize("extra", [{"say": "x"}, {"twiml": "<Response/>"},
                                   {"url": "https://a.b/t"}])
def test_call_with_one_source(extra: dict) -> None:
    jobs.from_dict({"type": "call", "to": "+15551234567", **extra})


def test_say_with_voice_and_language() -> None:
    job = jobs.from_dict({**CALL, "voice": "Polly.Joanna", "language": "en-US"})
    assert (job.voice, job.language) == ("Polly.Joanna", "en-US")


@pytest.mark.parametrize("doc, message", [
    ({**SMS, "bodyy": "x"}, "unknown field(s) 'bodyy'"),
    ({"to": "+15551234567", "body": "x"}, "missing required field 'type'"),
    ({"type": "sms", "body": "x"}, "missing required field 'to'"),
    ({**SMS, "type": "fax"}, "field 'type': must be \"sms\" or \"call\""),
    ({**SMS, "to": "5551234567"}, "field 'to': \"5551234567\" is not an E.164 number"),
    ({**SMS, "to": "+0551234567"}, "is not an E.164 number"),
    ({**SMS, "from": "+1 555 123"}, "field 'from': \"+1 555 123\" is not an E.164 number"),
    ({**SMS, "status_callback": "http://a.b/s"}, "field 'status_callback': \"http://a.b/s\" is not an https URL"),
    ({**SMS, "version": 2}, "only version 1 is supported"),
    ({**SMS, "id": ""}, "field 'id'"),
    ({**SMS, "id": "a/b"}, "field 'id'"),
    ({**SMS, "id": 7}, "field 'id': must be of JSON type string"),
    ({**SMS, "body": ""}, "field 'body': must be at least 1 character(s)"),
    ({**SMS, "body": "x" * 1601}, "field 'body': must be at most 1600 characters"),
    ({"type": "sms", "to": "+15551234567"}, "an sms job needs 'body' and/or 'media_url'"),
    ({**SMS, "media_url": []}, "field 'media_url': must be at least 1 item(s)"),
    ({**SMS, "media_url": ["https://a.b/x"] * 11}, "field 'media_url': must be at most 10 items"),
    ({**SMS, "media_url": ["ftp://a.b/x"]}, "field 'media_url[0]': \"ftp://a.b/x\" is not an https URL"),
    ({**SMS, "say": "x"}, "field(s) 'say' not allowed in an sms job"),
    ({**SMS, "voice": "alice"}, "field(s) 'voice' not allowed in an sms job"),
    ({"type": "call", "to": "+15551234567"}, "a call job needs exactly one of 'say', 'twiml', 'url' (got none)"),
    ({**CALL, "url": "https://a.b/t"}, "a call job needs exactly one of 'say', 'twiml', 'url' (got say, url)"),
    ({**CALL, "body": "x"}, "field(s) 'body' not allowed in a call job"),
    ({"type": "call", "to": "+15551234567", "url": "https://a.b/t", "voice": "alice"}, "'say' is required with 'voice'"),
    ({**CALL, "language": "english please"}, "field 'language'"),
    ({**CALL, "say": "x" * 3501}, "field 'say': must be at most 3500 characters"),
    ({"type": "call", "to": "+15551234567", "twiml": "<Response>"}, "field 'twiml': not well-formed XML"),
    ({"type": "call", "to": "+15551234567", "twiml": "<Say>x</Say>"}, "the root element must be <Response>, not <Say>"),
    ({"type": "call", "to": "+15551234567", "twiml": "<Response>" + "x" * 4000 + "</Response>"}, "field 'twiml': must be at most 4000 characters"),
    ({"type": "call", "to": "+15551234567", "url": "https://"}, "field 'url'"),
    ([SMS], "a job must be a JSON object, not list"),
])
def test_rule_refused_with_named_field(doc: object, message: str) -> None:
    assert message in rejected(doc)


def test_plain_and_base64_messages_decode_the_same() -> None:
    text = json.dumps(SMS)
    assert jobs.parse(text) == jobs.parse(base64.b64encode(text.encode()).decode())
    assert jobs.parse(text.encode()) == jobs.parse(base64.b64encode(text.encode()))


def test_not_json() -> None:
    with pytest.raises(JobRejected, match="message is not JSON"):
        jobs.parse("hello")
    with pytest.raises(JobRejected, match="message is not JSON"):
        jobs.parse(base64.b64encode(b"hello").decode())
    with pytest.raises(JobRejected, match="not UTF-8"):
        jobs.parse(b"\xff\xfe")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=5), max_leaves=12)
job_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["sms", "call", "fax", 1])},
    optional={k: st.one_of(st.text(max_size=40), json_values) for k in
              ("to", "from", "body", "media_url", "say", "twiml", "url", "voice", "language",
               "id", "status_callback", "version")})


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(job_like, json_values, st.binary(max_size=200).map(base64.b64encode)))
def test_any_message_is_a_job_or_a_clear_rejection(doc: object) -> None:
    text = doc.decode() if isinstance(doc, bytes) else json.dumps(doc)
    try:
        job = jobs.parse(text)
    except JobRejected as exc:
        assert str(exc)
    else:
        assert jobs.from_dict(jobs.to_dict(job)) == job
