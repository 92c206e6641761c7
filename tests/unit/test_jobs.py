"""Every rule of the job schema, each accepted and refused."""

import base64
import datetime as dt
import json
import os
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.validation import WORST_INPUTS
from shared import jobs
from shared.jobs import Job, JobRejected
from shared.storage import MAX_MESSAGE_BYTES, queue_bytes

SMS = {"type": "sms", "to": "+15551234567", "body": "hi"}
CALL = {"type": "call", "to": "+15551234567", "say": "hello"}
MG = "MG" + "0123456789abcdef" * 2
HX = "HX" + "0123456789abcdef" * 2
# "Now" for every test: 2031-02-20 08:00 UTC, injected (the published examples schedule a
# reminder for 2031-03-01).
NOW = dt.datetime(2031, 2, 20, 8, 0, tzinfo=dt.UTC).timestamp()


def clock() -> float:
    return NOW


def at(seconds_ahead: float) -> str:
    return dt.datetime.fromtimestamp(NOW + seconds_ahead, dt.UTC).isoformat()


def rejected(doc: object) -> str:
    with pytest.raises(JobRejected) as err:
        jobs.from_dict(doc, clock=clock)
    return str(err.value)


@pytest.mark.parametrize("doc", jobs.schema()["examples"])
def test_published_examples_are_valid(doc: dict) -> None:
    job = jobs.from_dict(doc, clock=clock)
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
# Values near the valid ones, so that both branches of each rule are reached.
near_valid = st.sampled_from(["+15551234567", "whatsapp:+15551234567", "https://a.example/x",
                              MG, HX, "2031-03-01T09:00:00Z", "Enable", "hi", "", "12#",
                              "+1555123456\n", "https://a b"])
job_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["sms", "call", "fax", 1])},
    optional={k: st.one_of(near_valid, st.text(max_size=40), st.integers(-2, 70000),
                           st.booleans(), json_values,
                           st.lists(near_valid, min_size=1, max_size=3),
                           st.dictionaries(st.sampled_from(["1", "2", "a b"]), near_valid,
                                           max_size=2))
              for k in jobs.schema()["properties"] if k != "type"})


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(job_like, json_values, st.binary(max_size=200).map(base64.b64encode)))
def test_any_message_is_a_job_or_a_clear_rejection(doc: object) -> None:
    text = doc.decode() if isinstance(doc, bytes) else json.dumps(doc)
    try:
        job = jobs.parse(text, clock=clock)
    except JobRejected as exc:
        assert str(exc)
    else:
        assert jobs.from_dict(jobs.to_dict(job), clock=clock) == job


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(job_like)
def test_compiled_validator_and_jsonschema_agree(doc: dict) -> None:
    # The compiled validator decides; jsonschema explains. A job one accepts and the other
    # refuses would be sent against the published schema, or refused with no reason.
    assert jobs._fast_validator()(doc) == (jobs.errors(doc) == [])


# -- the sending options (issue: Messaging Services, scheduling, WhatsApp, call options) --

def test_messaging_service_scheduled_sms() -> None:
    doc = {**SMS, "messaging_service_sid": MG, "send_at": "2031-03-01T09:00:00+01:00",
           "validity_period": 3600, "shorten_urls": True}
    job = jobs.from_dict(doc, clock=clock)
    assert (job.messaging_service_sid, job.validity_period, job.shorten_urls) == (MG, 3600, True)
    assert job.send_at_utc == dt.datetime(2031, 3, 1, 8, 0, tzinfo=dt.UTC)
    assert jobs.to_dict(job) == doc


def test_whatsapp_template() -> None:
    doc = {"type": "sms", "to": "whatsapp:+15551234567", "from": "whatsapp:+15557654321",
           "content_sid": HX, "content_variables": {"1": "Ada", "order_id": "1042"}}
    job = jobs.from_dict(doc, clock=clock)
    assert job.whatsapp and job.content_variables == {"1": "Ada", "order_id": "1042"}
    assert jobs.to_dict(job) == doc


def test_whatsapp_message_with_one_media_url() -> None:
    job = jobs.from_dict({"type": "sms", "to": "whatsapp:+15551234567", "body": "Your label",
                          "media_url": ["https://a.example/label.pdf"]}, clock=clock)
    assert job.media_url == ("https://a.example/label.pdf",)


# Twilio takes up to 100 variables of up to 1600 characters each, names up to 16; a job must
# fit one 64 KiB queue message (re-enqueued for a retry), so longer values need fewer of them.
@pytest.mark.parametrize("count, longest", [(5, 1600), (20, 500), (100, 100)])
def test_template_variables_up_to_twilios_count_shorter_as_they_grow(count: int,
                                                                    longest: int) -> None:
    def doc(n: int, length: int) -> dict[str, Any]:
        return {"type": "sms", "to": "+15551234567", "content_sid": HX,
                "content_variables": {f"v{i}": "x" * length for i in range(n)}}

    assert jobs.from_dict(doc(count, longest), clock=clock).content_variables
    first = "field 'content_variables[\"v0\"]': must be at most "
    if count < 100:  # one more variable, with values this long: refused, saying why
        assert rejected({**doc(count + 1, 1), "content_variables": {
            **doc(count + 1, 1)["content_variables"], "v0": "x" * longest}}) == (
            first + f"{ {5: 500, 20: 100}[count]} characters with {count + 1} or more "
                    "variables (a job must fit one queue message)")
    assert rejected({**doc(count, 1), "content_variables": {
        **doc(count, 1)["content_variables"], "v0": "x" * (longest + 1)}}).startswith(
        first + f"{longest} characters")


def test_call_options() -> None:
    doc = {**CALL, "machine_detection": "DetectMessageEnd", "machine_detection_timeout": 30,
           "async_amd": True, "async_amd_status_callback": "https://cb.example/amd",
           "timeout": 25, "time_limit": 600, "record": True, "caller_id": "+15557654321"}
    job = jobs.from_dict(doc, clock=clock)
    assert (job.machine_detection, job.async_amd, job.timeout, job.record) == (
        "DetectMessageEnd", True, 25, True)
    assert jobs.to_dict(job) == doc
    digits = {**CALL, "send_digits": "ww1234#", "timeout": 25, "caller_id": "+15557654321"}
    assert jobs.to_dict(jobs.from_dict(digits, clock=clock)) == digits


# Twilio's Calls API (twilio_api_v2010.json, SendDigits and MachineDetection): "If both
# SendDigits and MachineDetection parameters are provided, then MachineDetection will be
# ignored"; AsyncAmdStatusCallback is called only for detection in the background.
@pytest.mark.parametrize("doc, reason", [
    ({**CALL, "send_digits": "ww1#", "machine_detection": "Enable"},
     "field(s) 'machine_detection' not allowed with 'send_digits' (Twilio ignores "
     "MachineDetection when SendDigits is given)"),
    ({**CALL, "machine_detection": "Enable", "async_amd_status_callback": "https://a.b/amd"},
     "field(s) 'async_amd_status_callback' not allowed without 'async_amd': true (Twilio "
     "posts the result there only when it detects in the background)"),
    ({**CALL, "machine_detection": "Enable", "async_amd": False,
      "async_amd_status_callback": "https://a.b/amd"},
     "field(s) 'async_amd_status_callback' not allowed without 'async_amd': true (Twilio "
     "posts the result there only when it detects in the background)"),
])
def test_call_options_twilio_would_ignore_are_refused(doc: dict, reason: str) -> None:
    assert rejected(doc) == reason


def test_integral_floats_become_integers() -> None:
    # JSON Schema counts 30.0 as an integer; Twilio must get "30", not "30.0".
    job = jobs.from_dict({**CALL, "timeout": 30.0}, clock=clock)
    assert job.timeout == 30 and isinstance(job.timeout, int)


@pytest.mark.parametrize("seconds", [15 * 60, 35 * 86400])
def test_send_at_window_edges_are_accepted(seconds: int) -> None:
    assert jobs.from_dict({**SMS, "send_at": at(seconds)}, clock=clock).send_at == at(seconds)


@pytest.mark.parametrize("doc, message", [
    ({**SMS, "messaging_service_sid": "MG12"}, "field 'messaging_service_sid': \"MG12\" is not a Messaging Service SID (MG + 32 hex digits)"),
    ({**SMS, "send_at": "2031-03-01T09:00:00"}, "field 'send_at': \"2031-03-01T09:00:00\" is not ISO 8601 with an offset"),
    ({**SMS, "send_at": "2031-02-30T09:00:00Z"}, "field 'send_at': \"2031-02-30T09:00:00Z\" is not a date and time"),
    ({**SMS, "send_at": at(14 * 60)}, "field 'send_at': 2031-02-20T08:14:00+00:00 is 14 minute(s) ahead; Twilio schedules messages 15 minutes to 35 days ahead"),
    ({**SMS, "send_at": at(-120)}, "field 'send_at': 2031-02-20T07:58:00+00:00 is 2 minute(s) ago"),
    ({**SMS, "send_at": at(36 * 86400)}, "is 36.0 days ahead; Twilio schedules messages 15 minutes to 35 days ahead"),
    ({**SMS, "content_sid": "HX1"}, "field 'content_sid': \"HX1\" is not a Content template SID (HX + 32 hex digits)"),
    ({**SMS, "content_sid": HX}, "field(s) 'body' not allowed with 'content_sid' (the template holds the text and media)"),
    ({**SMS, "content_variables": {"1": "x"}}, "'content_sid' is required with 'content_variables'"),
    ({**SMS, "content_sid": HX, "content_variables": {"1": 5}}, "field 'content_variables[\"1\"]': must be of JSON type string"),
    ({"type": "sms", "to": "+15551234567", "content_sid": HX, "content_variables": {"a b": "x"}}, "field 'content_variables': \"a b\" is not a variable name"),
    ({"type": "sms", "to": "+15551234567", "content_sid": HX, "content_variables": {str(i): "x" for i in range(101)}}, "field 'content_variables': must be at most 100 entries"),
    ({"type": "sms", "to": "+15551234567", "content_sid": HX, "content_variables": {"1": "x" * 1601}}, "field 'content_variables[\"1\"]': must be at most 1600 characters"),
    ({"type": "sms", "to": "+15551234567", "content_sid": HX, "content_variables": {"first_name_long12": "x"}}, "field 'content_variables': variable name \"first_name_long12\" must be at most 16 characters"),
    ({**SMS, "validity_period": 0}, "field 'validity_period': must be at least 1"),
    ({**SMS, "validity_period": 36001}, "field 'validity_period': must be at most 36000"),
    ({**SMS, "shorten_urls": "yes"}, "field 'shorten_urls': must be of JSON type boolean"),
    ({**SMS, "to": "whatsapp:+15551234567", "from": "+15557654321"}, "field 'from': \"+15557654321\" is not a WhatsApp address like whatsapp:+15551234567"),
    ({**SMS, "from": "whatsapp:+15557654321"}, "field 'from': \"whatsapp:+15557654321\" is not an E.164 number like +15551234567 (whatsapp: addresses are for sms jobs to a whatsapp: recipient)"),
    ({**SMS, "to": "whatsapp:+15551234567", "media_url": ["https://a.b/1.png", "https://a.b/2.png"]}, "field 'media_url': WhatsApp takes one media URL per message, got 2"),
    ({**SMS, "to": "whatsapp:15551234567"}, "field 'to': \"whatsapp:15551234567\" is not a WhatsApp address like whatsapp:+15551234567"),
    ({**CALL, "to": "whatsapp:+15551234567"}, "field 'to': \"whatsapp:+15551234567\" is not an E.164 number like +15551234567"),
    ({**CALL, "send_at": at(3600)}, "field(s) 'send_at' not allowed in a call job"),
    ({**CALL, "messaging_service_sid": MG}, "field(s) 'messaging_service_sid' not allowed in a call job"),
    ({**SMS, "machine_detection": "Enable", "timeout": 5}, "field(s) 'machine_detection', 'timeout' not allowed in an sms job"),
    ({**CALL, "machine_detection": "Yes"}, "field 'machine_detection': must be \"Enable\" or \"DetectMessageEnd\", got \"Yes\""),
    ({**CALL, "async_amd": True}, "'machine_detection' is required with 'async_amd'"),
    ({**CALL, "machine_detection_timeout": 30}, "'machine_detection' is required with 'machine_detection_timeout'"),
    ({**CALL, "machine_detection": "Enable", "machine_detection_timeout": 60}, "field 'machine_detection_timeout': must be at most 59"),
    ({**CALL, "timeout": 601}, "field 'timeout': must be at most 600"),
    ({**CALL, "time_limit": 0}, "field 'time_limit': must be at least 1"),
    ({**CALL, "record": "true"}, "field 'record': must be of JSON type boolean"),
    ({**CALL, "send_digits": "12x"}, "field 'send_digits': \"12x\" has keys other than 0-9, A-D, #, *, w, W"),
    ({**CALL, "caller_id": "555"}, "field 'caller_id': \"555\" is not an E.164 number like +15551234567"),
    ({**SMS, "body": "a\x00b"}, "field 'body': \"a\\u0000b\" has a control character or an unpaired surrogate"),
    ({**SMS, "body": "a\ud800b"}, "field 'body'"),
    ({**SMS, "to": "+15551234567\n"}, "field 'to': \"+15551234567\\n\" is not an E.164 number"),
    ({**SMS, "status_callback": "https://a.example/\u00e9"}, "field 'status_callback': \"https://a.example/\u00e9\" is not an https URL"),
    ({**SMS, "status_callback": "https://a.example/" + "x" * 1007}, "field 'status_callback': must be at most 1024 characters"),
])
def test_option_refused_with_named_field(doc: object, message: str) -> None:
    assert message in rejected(doc)


# -- sizes and linear time (security review: slow or oversized input) -----------------------

def test_a_message_larger_than_any_queue_message_is_refused_before_parsing() -> None:
    text = json.dumps({**SMS, "body": "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(JobRejected, match=r"no job is larger than a queue message \(65536 bytes\)"):
        jobs.parse(text, clock=clock)
    with pytest.raises(JobRejected, match="no job is larger than a queue message"):
        jobs.parse(base64.b64encode(text.encode()), clock=clock)


def test_deeply_nested_json_is_a_rejection_not_a_crash() -> None:
    with pytest.raises(JobRejected, match="nested too deeply"):
        jobs.parse("[" * 30000 + "]" * 30000, clock=clock)


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_pattern_comes_with_a_max_length() -> None:
    unbounded = [sub["pattern"] for sub in _walk(jobs.schema())
                 if "pattern" in sub and "maxLength" not in sub]
    assert unbounded == []


def _keywords(node: Any) -> Any:
    """Every keyword of a schema and its subschemas."""
    if not isinstance(node, dict):
        return
    yield from node
    for key in ("properties", "$defs"):
        for sub in node.get(key, {}).values():
            yield from _keywords(sub)
    for key in ("items", "additionalProperties", "propertyNames", "if", "then", "else", "not"):
        yield from _keywords(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            yield from _keywords(sub)


def test_the_schema_uses_only_keywords_the_compiled_validator_implements() -> None:
    # fastjsonschema silently ignores a keyword it does not know (dependentRequired, ...):
    # the published schema keeps to the ones it compiles.
    from fastjsonschema.draft07 import CodeGeneratorDraft07

    known = set(CodeGeneratorDraft07({})._json_keywords_to_function) | {
        "then", "else",  # compiled with "if"
        "$schema", "$id", "$ref", "$defs", "title", "description", "examples"}
    assert set(_keywords(jobs.schema())) - known == set()


# Each is one queue message built to make a backtracking pattern crawl (the schema's old URL
# pattern took ~18 s on the first): refused in milliseconds (bench/validation.py).
@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", WORST_INPUTS)
def test_worst_inputs_are_refused_in_linear_time(name: str) -> None:
    assert rejected(WORST_INPUTS[name])


@pytest.mark.parametrize("doc, reason", [
    (WORST_INPUTS["media items"], "field 'media_url': must be at most 10 items"),
    (WORST_INPUTS["variable count"], "field 'content_variables': must be at most 100 entries"),
    # Each value is too long for the rules on many variables too: they are not checked.
    ({"type": "sms", "to": "+15551234567", "content_sid": HX,
      "content_variables": {str(i): "x" * 501 for i in range(101)}},
     "field 'content_variables': must be at most 100 entries"),
])
def test_a_list_over_its_limit_is_refused_for_that_alone(doc: dict, reason: str) -> None:
    """Its thousands of items are not each checked and described: the reason was 2.5 MB."""
    assert rejected(doc) == reason


def test_a_refused_job_examines_a_bounded_number_of_errors() -> None:
    # Every field of the wrong type, and ten bad media URLs: over 40 errors.
    doc = {**dict.fromkeys(jobs.schema()["properties"], [None]), "type": "sms",
           "to": "+15551234567", "media_url": ["x"] * 10}
    examined = 0

    def counted() -> Any:
        nonlocal examined
        for error in jobs._validator().iter_errors(doc):
            examined += 1
            yield error

    assert len(jobs.errors(doc)) > 2 * jobs.MAX_ERRORS
    reason = jobs.explain(doc, counted())
    assert examined == jobs.MAX_ERRORS + 1  # the one after the last says "and more"
    assert reason.endswith("; and more") and len(reason) <= jobs.MAX_REASON_CHARS
    assert reason == rejected(doc)


def test_each_clause_of_a_reason_is_cut_short() -> None:
    key = "k" * 60000  # a path as long as a queue message
    reason = rejected({"type": "sms", "to": "+15551234567", "content_sid": HX,
                       "content_variables": {key: 5}})
    cut = f"field 'content_variables[\"{key}\"]': must be of JSON type string"
    assert reason == ("field 'content_variables': variable name \"" + "k" * 56 + "... must "
                      "be at most 16 characters; " + cut[:jobs.MAX_CLAUSE_CHARS - 3] + "...")


def _worst_url() -> str:
    # `&` is the costliest character a URL may hold: 5 bytes once XML-escaped on the queue.
    return "https://" + "&" * (jobs.schema()["$defs"]["https_url"]["maxLength"] - 8)


# (variables, longest value) at each step the schema allows: the largest of each must fit.
_VARIABLE_TIERS = [(5, 1600), (20, 500), (100, 100)]


def _largest_jobs() -> dict[str, dict[str, Any]]:
    props = jobs.schema()["properties"]
    text = "&"  # also the costliest character in text fields
    name_length = props["content_variables"]["propertyNames"]["maxLength"]
    common = {"version": 1, "id": "i" * props["id"]["maxLength"],
              "status_callback": _worst_url()}
    template = {**common, "type": "sms", "to": "whatsapp:+1" + "5" * 14,
                "from": "whatsapp:+1" + "5" * 14, "messaging_service_sid": MG,
                "send_at": "2031-03-01T09:00:00.123456+01:00", "content_sid": HX,
                "validity_period": 36000, "shorten_urls": True}
    amd = {"machine_detection": "DetectMessageEnd", "machine_detection_timeout": 59,
           "async_amd": True, "async_amd_status_callback": _worst_url()}
    call = {**common, "type": "call", "to": "+1" + "5" * 14, "from": "+1" + "5" * 14,
            "say": text * props["say"]["maxLength"], "voice": "v" * 64,
            "language": "en-" + "-".join(["abcdefgh"] * 3), **amd,
            "timeout": 600, "time_limit": 86400, "record": True, "caller_id": "+1" + "5" * 14}
    return {
        "sms": {**common, "type": "sms", "to": "+1" + "5" * 14, "from": "+1" + "5" * 14,
                "messaging_service_sid": MG, "send_at": "2031-03-01T09:00:00.123456+01:00",
                "body": text * props["body"]["maxLength"],
                "media_url": [_worst_url()] * props["media_url"]["maxItems"],
                "validity_period": 36000, "shorten_urls": True},
        **{f"template, {count} variables": {**template, "content_variables": {
            f"{i:03d}".ljust(name_length, "v"): text * longest for i in range(count)}}
           for count, longest in _VARIABLE_TIERS},
        "call": call,
        # SendDigits and MachineDetection exclude each other (Twilio ignores the second).
        "call with digits": {**{k: v for k, v in call.items() if k not in amd},
                             "send_digits": "W" * 32},
    }


@pytest.mark.parametrize("kind", ["sms", "call", "call with digits"] + [
    f"template, {count} variables" for count, _ in _VARIABLE_TIERS])
def test_the_largest_valid_job_fits_a_queue_message(kind: str) -> None:
    # The app re-enqueues a copy of a job for each retry (with its key as `id`): every
    # valid job must fit a storage queue message, whatever its content.
    job = jobs.from_dict(_largest_jobs()[kind], clock=clock)
    copy = json.dumps(jobs.to_dict(replace(job, id="k" * 128)), ensure_ascii=False)
    assert queue_bytes(copy) <= MAX_MESSAGE_BYTES


def test_the_largest_jobs_use_every_field() -> None:
    used = set().union(*_largest_jobs().values())
    assert set(jobs.schema()["properties"]) - used - {"twiml", "url"} == set()
