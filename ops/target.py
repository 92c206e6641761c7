"""Where the tools read and write: the app's storage account (its queues and jobs table).

In order: `--connection-string`; `--account NAME` or `--account-url https://...` with your
Azure login; else the settings as the app reads them (environment, local.settings.json,
local defaults): `AzureWebJobsStorage` (a connection string; locally Azurite), or
`AzureWebJobsStorage__accountName` / `__queueServiceUri` / `__tableServiceUri` with your login.

An Azure login is `DefaultAzureCredential`. It is asked for a token once, before any
request, so no login is one line within seconds. Managed identity is left out unless its
endpoint is configured (`IDENTITY_ENDPOINT`/`MSI_ENDPOINT`, or `AZURE_TOKEN_CREDENTIALS`
names it): from a laptop it would probe the instance metadata address and wait. The SDK
clients retry twice with short waits: the storage SDK's defaults (3 retries after 15, 18
and 24 s, of any error, a missing login included) made a failing command hang past a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ops.localsettings import (
    DEV_DEFAULTS,
    connection_fields,
    is_development_storage,
    is_local_storage,
    is_loopback,
    load_settings,
    user_settings,
)
from shared.settings import STORAGE_PREFIX, Settings

STORAGE_SCOPE = "https://storage.azure.com/.default"
LOGIN_TIMEOUT_SECONDS = 30.0
# Short, bounded waits for an interactive tool (the SDK defaults suit a service).
QUEUE_OPTIONS: dict[str, Any] = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2,
                                 "connection_timeout": 5, "read_timeout": 30}
TABLE_OPTIONS: dict[str, Any] = {"retry_total": 2, "retry_backoff_factor": 0.5,
                                 "connection_timeout": 5, "read_timeout": 30}
ROLE_HINT = ("`jobs show` needs 'Storage Table Data Reader'; `deadletters` and `enqueue` "
             "'Storage Queue Data Contributor', and `deadletters replay` 'Storage Table Data "
             "Contributor' (docs/operations.md)")
# A local service that is not running refuses the connection at once; the SDKs would retry
# it for seconds. One quick look first says so at once.
PROBE_SECONDS = 1.0


class OpsError(Exception):
    """A one-line message for the person at the terminal; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """The storage account, and the app's names in it."""

    where: str  # for messages: "Azurite (UseDevelopmentStorage=true)", "account x", ...
    names: Settings  # queue and table names (only those fields are read)
    connection_string: str | None = None
    queue_url: str | None = None
    table_url: str | None = None

    @property
    def account(self) -> str | None:
        """The storage account's name, when the target says it."""
        if self.connection_string is not None:
            return connection_fields(self.connection_string).get("AccountName")
        host = urlsplit(self.queue_url or "").hostname or ""
        return host.split(".")[0] if host.endswith(".core.windows.net") else None

    def endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of the queue and table services on this machine, if any."""
        if self.connection_string is not None and is_development_storage(
                self.connection_string):
            return [("127.0.0.1", 10001), ("127.0.0.1", 10002)]
        urls = [self.queue_url or "", self.table_url or ""]
        if self.connection_string is not None:
            fields = connection_fields(self.connection_string)
            urls = [fields.get("QueueEndpoint", ""), fields.get("TableEndpoint", "")]
        out = []
        for url in urls:
            parts = urlsplit(url)
            if parts.hostname and is_loopback(url):
                out.append((parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                           else 80)))
        return out

    @property
    def local(self) -> bool:
        """Storage on this machine (Azurite), which scripts/run-local starts."""
        if self.connection_string is not None:
            return is_local_storage(self.connection_string)
        return is_loopback(self.queue_url or "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("storage (default: AzureWebJobsStorage from the settings; "
                                  "locally, Azurite)")
    g.add_argument("--account", metavar="NAME",
                   help="a storage account, with your Azure login (az login)")
    g.add_argument("--account-url", metavar="URL",
                   help="https://<account>.queue.core.windows.net (or .table.), with your "
                        "Azure login")
    g.add_argument("--connection-string", metavar="CS", help="a storage connection string")
    g.add_argument("--outbound-queue", metavar="NAME",
                   help="default: OUTBOUND_QUEUE_NAME or twilio-outbound (-rejected and "
                        "-poison are derived)")
    g.add_argument("--table", metavar="NAME", help="default: JOBS_TABLE_NAME or twiliojobs")


def _swap(url: str, service: str) -> str | None:
    """The sibling service's URL (`.queue.` <-> `.table.`), when the host names it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    for name in ("queue", "table", "blob"):
        if f".{name}." in host:
            return url.replace(f".{name}.", f".{service}.", 1).rstrip("/")
    return None


def _https(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise OpsError(f"{what} must be an https URL such as "
                       f"https://<account>.queue.core.windows.net (an Azure login's token is "
                       f"only sent over https); got {url!r}. For Azurite, use "
                       "--connection-string or the AzureWebJobsStorage setting.")
    return url.rstrip("/")


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Target:
    settings = load_settings(env=env)
    names = Settings(key_vault_url=None,
                     outbound_queue_name=getattr(args, "outbound_queue", None)
                     or settings.get("OUTBOUND_QUEUE_NAME") or "twilio-outbound",
                     jobs_table_name=getattr(args, "table", None)
                     or settings.get("JOBS_TABLE_NAME") or "twiliojobs")
    if args.connection_string:
        return Target("the storage of --connection-string", names,
                      connection_string=args.connection_string)
    if args.account:
        return Target(f"account {args.account}", names,
                      queue_url=f"https://{args.account}.queue.core.windows.net",
                      table_url=f"https://{args.account}.table.core.windows.net")
    if args.account_url:
        url = _https(args.account_url, "--account-url")
        return Target(urlsplit(url).netloc, names, queue_url=_swap(url, "queue") or url,
                      table_url=_swap(url, "table") or url)
    user = user_settings(env=env)
    if user.get(STORAGE_PREFIX):
        return Target(_describe(user[STORAGE_PREFIX]), names,
                      connection_string=user[STORAGE_PREFIX])
    account = user.get(f"{STORAGE_PREFIX}__accountName")
    queue = user.get(f"{STORAGE_PREFIX}__queueServiceUri")
    table = user.get(f"{STORAGE_PREFIX}__tableServiceUri")
    if account or queue or table:
        queue = queue or (f"https://{account}.queue.core.windows.net" if account else None)
        table = table or (f"https://{account}.table.core.windows.net" if account else None)
        queue = _https(queue or _swap(table or "", "queue") or "",
                       f"{STORAGE_PREFIX}__queueServiceUri")
        table = _https(table or _swap(queue, "table") or "",
                       f"{STORAGE_PREFIX}__tableServiceUri")
        return Target(account and f"account {account}" or urlsplit(queue).netloc, names,
                      queue_url=queue, table_url=table)
    conn = DEV_DEFAULTS[STORAGE_PREFIX]
    return Target(_describe(conn), names, connection_string=conn)


def _describe(conn: str) -> str:
    if is_development_storage(conn):
        return "Azurite (UseDevelopmentStorage=true)"
    parts = connection_fields(conn)
    if is_local_storage(conn):
        return f"Azurite on {urlsplit(parts['QueueEndpoint']).netloc}"
    return f"account {parts.get('AccountName', '?')}"


def credential_options() -> dict[str, Any]:
    """`DefaultAzureCredential`'s options for a person's machine (see the module docstring)."""
    options: dict[str, Any] = {"process_timeout": 10}
    if not any(os.environ.get(v) for v in ("AZURE_TOKEN_CREDENTIALS", "IDENTITY_ENDPOINT",
                                           "MSI_ENDPOINT")):
        options["exclude_managed_identity_credential"] = True
    return options


def credential() -> Any:
    """`DefaultAzureCredential` (async) for a person's machine."""
    from azure.identity.aio import DefaultAzureCredential

    try:
        return DefaultAzureCredential(**credential_options())
    except ValueError as exc:  # e.g. an AZURE_TOKEN_CREDENTIALS value it does not know
        raise OpsError(f"Azure login settings: {exc}") from None


class Session:
    """The clients one command uses, closed together; the login is checked on entry."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._credential: Any = None
        self._clients: dict[str, Any] = {}

    async def __aenter__(self) -> Session:
        await self._probe()
        if self.target.connection_string is None:
            self._credential = credential()
            try:
                await self._login()
            except BaseException:
                await self._credential.close()
                raise
        return self

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        for client in self._clients.values():
            await client.close()
        if self._credential is not None:
            await self._credential.close()
        line = self.explain(exc) if exc is not None else None
        if line is not None:  # an Azure SDK error leaves as one line naming this target
            raise OpsError(line, 1) from exc

    def explain(self, exc: BaseException) -> str | None:
        return explain(exc, self.target.where, local=self.target.local)

    async def _probe(self) -> None:
        """Storage on this machine that does not listen: one line at once."""
        for host, port in self.target.endpoints():
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                   PROBE_SECONDS)
            except (OSError, TimeoutError) as exc:
                why = "connection refused" if isinstance(exc, ConnectionRefusedError) else \
                    type(exc).__name__
                raise OpsError(f"cannot reach {self.target.where} ({host}:{port}: {why}); "
                               "is scripts/run-local running?", 1) from None
            writer.close()
            await writer.wait_closed()

    async def _login(self) -> None:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            await asyncio.wait_for(self._credential.get_token(STORAGE_SCOPE),
                                   LOGIN_TIMEOUT_SECONDS)
        except ClientAuthenticationError:
            raise OpsError(
                f"no Azure login for {self.target.where}: run `az login` (or `azd auth "
                "login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET), "
                "then try again; --debug shows what each credential said") from None
        except TimeoutError:
            raise OpsError(f"the Azure login did not answer within "
                           f"{LOGIN_TIMEOUT_SECONDS:.0f} s (az login, then try again)") from None

    def queue(self, name: str) -> Any:
        if f"q:{name}" not in self._clients:
            from azure.storage.queue.aio import QueueClient

            t = self.target
            self._clients[f"q:{name}"] = (
                QueueClient.from_connection_string(t.connection_string, name, **QUEUE_OPTIONS)
                if t.connection_string else
                QueueClient(str(t.queue_url), name, credential=self._credential,
                            **QUEUE_OPTIONS))
        return self._clients[f"q:{name}"]

    def table(self) -> Any:
        if "table" not in self._clients:
            from azure.data.tables.aio import TableClient

            t = self.target
            name = t.names.jobs_table_name
            self._clients["table"] = (
                TableClient.from_connection_string(t.connection_string, name, **TABLE_OPTIONS)
                if t.connection_string else
                TableClient(str(t.table_url), name, credential=self._credential,
                            **TABLE_OPTIONS))
        return self._clients["table"]


def explain(exc: BaseException, where: str, *, local: bool = False) -> str | None:
    """One line for an Azure SDK error, or None when it is not one. `local`: `where` is on
    this machine, so scripts/run-local may be what is missing."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, ClientAuthenticationError) and not getattr(exc, "status_code", None):
        return f"Azure login failed for {where}: {_first_line(exc)}"
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or exc.reason or ""
        if exc.status_code == 403 and code in ("AuthorizationPermissionMismatch",
                                               "AuthorizationFailure"):
            return f"{where} refused the request (403 {code}): your login lacks a data role; " \
                   f"{ROLE_HINT}"
        if exc.status_code == 403:
            return f"{where} refused the request (403 {code}): check the connection string " \
                   "or the login"
        return f"{where} answered {exc.status_code} {code}: {_first_line(exc)}"
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        hint = "is scripts/run-local running?" if local else \
            "check the account's name and your network"
        return f"cannot reach {where} ({_first_line(exc)}); {hint}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
