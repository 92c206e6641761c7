"""The azd environment the hooks run in, and Azure clients signed in as azd is.

azd gives a hook its environment (.azure/<env>/.env and the deployment's outputs) as
environment variables. A value set with `azd env set-secret` arrives as a reference,
`akvs://<subscription>/<vault>/<secret>`, that the hook resolves itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AKVS = re.compile(r"akvs://(?P<subscription>[^/]+)/(?P<vault>[0-9A-Za-z-]{3,24})/"
                  r"(?P<secret>[0-9A-Za-z-]{1,127})")
# Short, bounded SDK retries: a hook that is waiting polls again itself.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 10,
                                  "read_timeout": 30}


class HookError(Exception):
    """Stops the hook with one line that says what to do."""


@dataclass(frozen=True)
class AzdEnv:
    values: Mapping[str, str]

    def get(self, name: str) -> str:
        return (self.values.get(name) or "").strip()

    @property
    def env_file(self) -> str:
        return f".azure/{self.get('AZURE_ENV_NAME') or '<env>'}/.env"

    def app_url(self) -> str:
        host = self.get("FUNCTION_APP_HOST")
        if not host:
            raise HookError("FUNCTION_APP_HOST is not in the azd environment: run `azd provision` "
                            "first (it is one of the deployment's outputs).")
        return f"https://{host}"


def vault_url(vault_name: str) -> str:
    return f"https://{vault_name}.vault.azure.net"


def credential(env: AzdEnv) -> Any:
    """The login azd itself uses (`azd auth login`: a person, or a pipeline's service principal)."""
    from azure.identity import AzureDeveloperCliCredential

    return AzureDeveloperCliCredential(tenant_id=env.get("AZURE_TENANT_ID"),
                                       process_timeout=30)


def secret_client(url: str, cred: Any) -> Any:
    from azure.keyvault.secrets import SecretClient

    return SecretClient(vault_url=url, credential=cred, **CLIENT_OPTIONS)


def queue_client(account_url: str, queue: str, cred: Any) -> Any:
    from azure.storage.queue import QueueClient

    return QueueClient(account_url, queue, credential=cred, **CLIENT_OPTIONS)
