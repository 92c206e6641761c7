import logging

import pytest


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    # Capture every record so secret-leak checks see debug lines too.
    caplog.set_level(logging.DEBUG)
