"""Write the Twilio secrets into the app's vault, each only while it is absent.

A secret that exists is never written again: the next `azd provision` cannot put an old token
back over a rotation (docs/deploy.md, "Rotate the auth token"). The values come from the azd
environment, where `azd env set-secret` keeps only a reference to a vault of yours
(`akvs://...`), never the value, in .azure/<env>/.env. A plain value set with `azd env set`
works too, with a warning: it sits in that file in plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.hooks.azd import AKVS, AzdEnv, HookError
from infra.hooks.wait import Say
from shared.credentials import CredentialsError, checked

# (azd environment variable, secret name): the names infra/main.bicep gives the app
# (accountSidSecretName, authTokenSecretName); a test keeps both in step.
SECRETS = (("TWILIO_ACCOUNT_SID", "twilio-account-sid"),
           ("TWILIO_AUTH_TOKEN", "twilio-auth-token"))

# Reads `akvs://<subscription>/<vault>/<secret>` (a reference `azd env set-secret` made).
Resolver = Callable[[str, str], str]


def current(vault: Any, name: str) -> Any | None:
    """The secret's current version, or None when the vault has none."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return vault.get_secret(name)
    except ResourceNotFoundError:
        return None


def given(env: AzdEnv, variable: str, resolve: Resolver, say: Say) -> str | None:
    raw = env.get(variable)
    if not raw:
        return None
    ref = AKVS.fullmatch(raw)
    if ref:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            return resolve(ref["vault"], ref["secret"])
        except ResourceNotFoundError:
            raise HookError(f"{variable} refers to secret {ref['secret']} in vault {ref['vault']}, "
                            f"which is not there: set it again with `azd env set-secret "
                            f"{variable}`.") from None
        except HttpResponseError as exc:
            raise HookError(f"could not read {variable} from vault {ref['vault']} (HTTP "
                            f"{exc.status_code}): your login needs to read its secrets (Key "
                            "Vault Secrets User), as when you ran `azd env set-secret`.") from None
    if raw.startswith("akvs://"):
        raise HookError(f"{variable} in {env.env_file} is not a Key Vault reference azd makes "
                        "(akvs://<subscription>/<vault>/<secret>): set it again with "
                        f"`azd env set-secret {variable}`.")
    say(f"  warning: {variable} is in plain text in {env.env_file}. Once the secret is in the "
        f"vault, remove it: `azd env set {variable} \"\"` (keep such values with `azd env "
        f"set-secret {variable}`, which stores only a reference).")
    return raw


def seed(env: AzdEnv, vault: Any, resolve: Resolver, *, vault_name: str, say: Say) -> list[str]:
    """Writes the absent secrets; returns their names. Never prints a value."""
    existing = {name: current(vault, name) for _, name in SECRETS}
    for name, secret in existing.items():
        if secret is not None:
            created = getattr(secret.properties, "created_on", None)
            say(f"Kept {name} in {vault_name}" + (f" (version of {created:%Y-%m-%d})"
                                                   if created else "")
                + ": a secret that exists is never written again.")
    absent = [(variable, name) for variable, name in SECRETS if existing[name] is None]
    if not absent:
        return []
    values = {variable: given(env, variable, resolve, say) for variable, _ in absent}
    missing = [variable for variable, value in values.items() if not value]
    if missing:
        say(f"Not set yet in {vault_name}: {', '.join(name for _, name in absent)}. Until they "
            "are, webhooks answer 503 and jobs fail their attempts, then wait in -poison for "
            "`ops deadletters replay`. Set "
            + " and ".join(f"`azd env set-secret {v}`" for v in missing)
            + ", then `azd hooks run postprovision` (docs/deploy.md, Set the secrets).")
        return []
    pair = {name: values.get(variable) or getattr(existing[name], "value", None)
            for variable, name in SECRETS}
    try:
        checked(pair["twilio-account-sid"], pair["twilio-auth-token"],
                where="the azd environment (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)")
    except CredentialsError as exc:
        raise HookError(f"{exc} Nothing was written to {vault_name}: set the right value with "
                        "`azd env set-secret ...`, then `azd hooks run postprovision`.") from None
    written = []
    for variable, name in absent:
        _write(vault, name, str(values[variable]), vault_name)
        say(f"Wrote {name} to {vault_name} (its first version; from {variable}).")
        written.append(name)
    return written


def _write(vault: Any, name: str, value: str, vault_name: str) -> None:
    from azure.core.exceptions import HttpResponseError

    try:
        vault.set_secret(name, value, content_type="text/plain")
    except HttpResponseError as exc:
        if exc.status_code == 409:  # deleted, kept by soft delete: recover it, never overwrite
            raise HookError(
                f"{name} was deleted from {vault_name} and is kept there as deleted (soft "
                f"delete). Recover it with `az keyvault secret recover --vault-name {vault_name} "
                f"--name {name}` (it comes back with its old value), then "
                "`azd hooks run postprovision`.") from None
        raise
