"""The send path raises no DeprecationWarning: aiohttp deprecates `auth=` and `BasicAuth`,
which twilio-python passes; a warning today is a break on the next aiohttp."""

from __future__ import annotations

import asyncio
import base64
import warnings

from shared.credentials import CredentialCache, EnvironmentSource
from shared.jobs import Job
from shared.twilio_rest import TwilioApi
from tests.doubles import TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN, FROM


def test_a_send_raises_no_deprecation_warning_and_authenticates(
        twilio_double: TwilioDouble) -> None:
    twilio_double.auth_token = AUTH_TOKEN
    api = TwilioApi(CredentialCache(EnvironmentSource(ACCOUNT_SID, AUTH_TOKEN)),
                    twilio_double.url)

    async def go() -> None:
        try:
            await api.send(Job("sms", "+15551230000", body="hi"), FROM)
            await api.find(Job("sms", "+15551230000", body="hi"), FROM, 0.0)
        finally:
            await api.close()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(go())
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []
    [create] = twilio_double.sent()
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert create.headers["Authorization"] == f"Basic {expected}"
