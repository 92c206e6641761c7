"""What `scripts/run-local` plans from the settings, before it starts anything: the banner
names the sender the app will use for a job that names none (`shared.jobs.prepare`)."""

from __future__ import annotations

import pytest

from devhost.run_local import plan
from ops.localsettings import DEV_DEFAULTS

SERVICE = "MG0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("settings", "line"), [
    ({}, "sender +15005550006; SMS keywords HOURS, ADDRESS; call flow on"),
    ({"TWILIO_MESSAGING_SERVICE_SID": SERVICE},
     f"sender SMS via Messaging Service {SERVICE}, calls from +15005550006; SMS keywords "
     "HOURS, ADDRESS; call flow on"),
    ({"TWILIO_MESSAGING_SERVICE_SID": SERVICE, "TWILIO_FROM_NUMBER": ""},
     f"sender SMS via Messaging Service {SERVICE}, calls (none: call jobs need a from); SMS "
     "keywords HOURS, ADDRESS; call flow on"),
    ({"TWILIO_FROM_NUMBER": ""}, "sender (none: jobs need a from); SMS keywords HOURS, "
     "ADDRESS; call flow on"),
])
def test_the_banner_names_the_sender_actually_used(settings: dict[str, str], line: str) -> None:
    assert plan({**DEV_DEFAULTS, **settings}, 7071).summary[1] == line
