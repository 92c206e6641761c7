"""Real services for integration tests, on 127.0.0.1, started here and stopped by PID:
Azurite, Prism (Twilio's official OpenAPI spec), an HTTPS Key Vault double behind the real
azure-identity credential chain, and a Twilio double for faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost import services
from tests.doubles import KeyVaultDouble, ManagedIdentityDouble, Tls, TwilioDouble
from tests.helpers import ACCOUNT_SID, AUTH_TOKEN


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def azurite(service_logs: Path) -> Iterator[services.Service]:
    svc = services.start_azurite(service_logs)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def prism(service_logs: Path) -> Iterator[services.Service]:
    svc = services.start_prism(service_logs)
    yield svc
    svc.stop()


@pytest.fixture
def storage_env(azurite: services.Service) -> dict[str, str]:
    """A fresh queue and table per test on the shared Azurite."""
    suffix = uuid.uuid4().hex[:10]
    return {**azurite.env, "OUTBOUND_QUEUE_NAME": f"out-{suffix}",
            "INBOUND_QUEUE_NAME": f"in-{suffix}", "STATUS_QUEUE_NAME": f"status-{suffix}",
            "JOBS_TABLE_NAME": f"jobs{suffix}"}


@pytest.fixture
def prism_recorder(prism: services.Service) -> Iterator[TwilioDouble]:
    """Prism behind a recorder, so a test can count what reached it and how it answered."""
    with TwilioDouble(upstream=prism.env["TWILIO_API_BASE_URL"]) as double:
        yield double  # type: ignore[misc]


@pytest.fixture
def twilio_double() -> Iterator[TwilioDouble]:
    with TwilioDouble() as double:
        yield double  # type: ignore[misc]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls.make(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def managed_identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[ManagedIdentityDouble]:
    """Point the real credential chain at a local App Service identity endpoint; with
    IDENTITY_ENDPOINT set it never probes the instance metadata address."""
    with ManagedIdentityDouble() as mi:
        for name in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
                     "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{mi.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", mi.header)
        monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")
        yield mi  # type: ignore[misc]


@pytest.fixture
def key_vault(tls: Tls, managed_identity: ManagedIdentityDouble) -> Iterator[KeyVaultDouble]:
    secrets = {"twilio-account-sid": ACCOUNT_SID, "twilio-auth-token": AUTH_TOKEN}
    with KeyVaultDouble(tls.server, secrets) as kv:
        yield kv  # type: ignore[misc]


def secret_client_factory(vault_url: str, ca_path: str) -> Any:
    """The real SecretClient + DefaultAzureCredential, with the two test-only options:
    trust the test CA, and accept a vault on 127.0.0.1 (see FACTS: challenge resource)."""
    def build() -> Any:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        return SecretClient(vault_url, DefaultAzureCredential(), connection_verify=ca_path,
                            verify_challenge_resource=False)
    return build


def run(coro: Any) -> Any:
    return asyncio.run(coro)
