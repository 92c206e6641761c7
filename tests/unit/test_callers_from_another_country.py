"""Low: `AllowedCallers[]`, `Moderators[]` (and CALL_FLOW's blocklist) match a number from
another country whose digits are the listed US/Canada number's without its leading 1.

`phone_key` compares digits and drops the `1` of an 11-digit number, so `+14795550122`
(Arkansas) and `+4795550122` (a Norwegian mobile: +47 9555 0122, 8 digits after 47) have the
same key. The same holds for Budapest (+36 1 ...) and area code 361, Belgium (+32 1x ...)
and 321, Singapore mobiles (+65 9...) and 659, Denmark (+45 8...) and 458, Stockholm and
468. A real subscriber there passes the forward twimlet's caller list and starts a
conference as its moderator without spoofing anything. Twilio sends From in E.164: compare
E.164 to E.164 (a national 10-digit entry read as +1), never digits with a 1 removed.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from shared.twimlets import RESTRICTED
from tests.helpers import ACCOUNT_SID
from tests.unit.test_webhook_guards import handle, hooks, post

PAIRS = [("+14795550122", "+4795550122"),   # Arkansas / Norway (mobile)
         ("+13615550122", "+3615550122"),   # Texas / Budapest
         ("+16595550122", "+6595550122")]   # Alabama / Singapore (mobile)


def call(caller: str) -> dict[str, str]:
    return {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT_SID, "From": caller,
            "Caller": caller, "To": "+15005550006", "Direction": "inbound"}


@pytest.mark.parametrize(("listed", "caller"), PAIRS)
def test_a_foreign_number_is_not_an_allowed_caller(listed: str, caller: str) -> None:
    query = urlencode({"PhoneNumber": "+15551230000", "AllowedCallers[0]": listed})
    res = handle(hooks(), "twiml/forward", post("twiml/forward", call(caller), query=query))
    assert RESTRICTED in res.body, f"{caller} was forwarded as {listed}: {res.body}"


@pytest.mark.parametrize(("listed", "caller"), PAIRS)
def test_a_foreign_number_is_not_a_moderator(listed: str, caller: str) -> None:
    query = urlencode({"Moderators[0]": listed})
    res = handle(hooks(), "twiml/conference", post("twiml/conference", call(caller),
                                                   query=query))
    assert 'startConferenceOnEnter="false"' in res.body, (
        f"{caller} started the conference as moderator {listed}")
