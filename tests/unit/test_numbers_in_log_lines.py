"""Low: phone numbers in common US/Canada forms reach the `dead_letter` log line whole.

docs/security.md: "numbers written as E.164, as 10 to 15 bare digits or in the US/Canada
form are masked". A producer who writes `to` the way people do (`1-415-555-0122`, or a
number pasted from a web page with no-break spaces) gets an invalid_job dead letter whose
reason quotes the value, and `shared.redaction` leaves it whole: `1-415-555-0122` (the
lookbehind refuses a `-` before `415`, and the leading `1-` fits no branch), `+1 415 555
0122` with U+00A0 or U+2009 (the separators allowed after `+` are ASCII only).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.unit.test_outbound import make, run

WRITTEN = ["1-415-555-0122", "+1\u00a0415\u00a0555\u00a00122", "+1\u2009(415)\u2009555-0122"]


@pytest.mark.parametrize("to", WRITTEN)
def test_a_number_quoted_in_a_dead_letter_reason_is_masked_in_the_log(
        to: str, caplog: pytest.LogCaptureFixture) -> None:
    processor, _, _, queues = make()
    run(processor, json.dumps({"type": "sms", "to": to, "body": "hi"}))
    assert json.loads(queues.texts("twilio-outbound-rejected")[0])["kind"] == "invalid_job"
    [line] = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("dead_letter")]
    digits = re.sub(r"[^0-9]", "", line.split("reason=", 1)[1].split("is not")[0])
    assert "415555" not in digits, f"a whole number in a log line: {line}"
