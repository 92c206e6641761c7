"""Wait until the deploying principal's new roles work, before azd deploys the code.

`dependsOn` orders the role assignments before the app; it does not wait for them to take
effect, which takes up to 10 minutes (Azure RBAC troubleshooting: "role assignment changes are
not being detected"). The deploying principal's roles (the vault, the queues) are created in
the same deployment as the app identity's, so once the principal's own access works the app's
is very likely to work too, and the vault is ready for the secrets.
"""

from __future__ import annotations

from typing import Any

from infra.hooks.wait import Clock, Say, until

BUDGET_SECONDS = 600.0
EVERY_SECONDS = 15.0


def answer(exc: Any) -> str:
    """"403 ForbiddenByRbac": the status and the service's error code."""
    error = getattr(exc, "error", None)
    code = getattr(exc, "error_code", None) or getattr(error, "code", None) or exc.reason or ""
    return f"{exc.status_code} {code}".strip()


def vault_probe(vault: Any, secret_name: str) -> str | None:
    """None once the vault lets us read (a 404 for an absent secret is an answer too)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    try:
        vault.get_secret(secret_name)
    except ResourceNotFoundError:
        return None
    except ClientAuthenticationError as exc:
        if getattr(exc, "status_code", None) is None:  # no token at all: waiting won't help
            raise
        return f"Key Vault answered {answer(exc)}"
    except HttpResponseError as exc:
        return f"Key Vault answered {answer(exc)}"
    except ServiceRequestError as exc:  # a new vault's name may take a moment to resolve
        return f"Key Vault is not reachable yet ({type(exc).__name__})"
    return None


def queue_probe(queue: Any) -> str | None:
    """None once we may read the outbound queue (what `ops enqueue` and `ops deadletters` need)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
    )

    try:
        queue.peek_messages(max_messages=1)
    except ClientAuthenticationError as exc:
        if getattr(exc, "status_code", None) is None:
            raise
        return f"the storage account answered {answer(exc)}"
    except HttpResponseError as exc:
        return f"the storage account answered {answer(exc)}"
    except ServiceRequestError as exc:
        return f"the storage account is not reachable yet ({type(exc).__name__})"
    return None


def wait_for_access(vault: Any, queue: Any, secret_name: str, *, say: Say,
                    clock: Clock | None = None, budget_s: float = BUDGET_SECONDS,
                    every_s: float = EVERY_SECONDS) -> bool:
    def probe() -> str | None:
        return vault_probe(vault, secret_name) or queue_probe(queue)

    say("Waiting until your new roles on the vault and the queues take effect "
        f"(Azure: up to 10 minutes; this hook waits up to {budget_s / 60:.0f}).")
    reason = until(probe, what="the role assignments", budget_s=budget_s, every_s=every_s,
                   say=say, clock=clock)
    if reason is None:
        say("Your roles work: the app identity's, made in the same deployment, should too.")
        return True
    say(f"Your roles still do not work after {budget_s / 60:.0f} minutes ({reason}). Nothing is "
        "wrong with the deployment: wait a few minutes, then run `azd hooks run postprovision` "
        "and `azd deploy` (or `azd up`) again. If it says 403 for long, check that you were "
        "allowed to create role assignments (docs/deploy.md, Prerequisites).")
    return False
