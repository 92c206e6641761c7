"""The app's queues and jobs table on local storage (Azurite), made before the app starts.

The Functions host's queue trigger does not create the queue it listens on
(azure-webjobs-sdk#2498), and the app creates the other queues and the table only when it
first writes there: on a fresh in-memory Azurite the README's first `python -m ops enqueue`
would get 404 QueueNotFound under `func start`, and `deadletters list` would find no queues.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# One quick try: a person is waiting, and a failure is reported, not retried.
QUICK: dict[str, Any] = {"retry_total": 0, "connection_timeout": 3, "read_timeout": 10}


class StorageProblem(RuntimeError):
    """A storage call failed; the message is one line (the status and error code, or why
    nothing answered)."""

    def __init__(self, message: str, *, api_version_refused: bool = False) -> None:
        super().__init__(message)
        self.api_version_refused = api_version_refused


def _problem(exc: Exception) -> StorageProblem:
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None)
        code = str(getattr(code, "value", code) or exc.reason or "")
        text = str(exc.message or "")
        # Azurite checks the API version unless started with --skipApiVersionCheck, and the
        # SDK is newer than it (../shared/FACTS.md): every queue call then fails with this.
        refused = code == "InvalidHeaderValue" and "API version" in text
        return StorageProblem(f"{exc.status_code} {code}".strip(), api_version_refused=refused)
    lines = str(exc).strip().splitlines()
    return StorageProblem(f"{type(exc).__name__}: {lines[0][:200] if lines else ''}".strip())


def probe(connection_string: str) -> None:
    """One queue call; raises `StorageProblem` when the queue service does not answer it."""
    from azure.storage.queue import QueueServiceClient

    try:
        with QueueServiceClient.from_connection_string(connection_string, **QUICK) as client:
            client.get_service_properties()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        raise _problem(exc) from None


def create(connection_string: str, queues: Iterable[str], table: str) -> None:
    """Create `queues` and `table` where they are missing; raises `StorageProblem`."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    try:
        with QueueServiceClient.from_connection_string(connection_string, **QUICK) as qs:
            for name in queues:
                try:
                    qs.create_queue(name)
                except ResourceExistsError:
                    pass
        with TableServiceClient.from_connection_string(connection_string, **QUICK) as ts:
            ts.create_table_if_not_exists(table)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        raise _problem(exc) from None
