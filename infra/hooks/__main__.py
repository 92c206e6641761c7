"""`python -m infra.hooks postprovision|postdeploy`: azure.yaml runs these through
infra/hooks/run after `azd provision` and `azd deploy` (and so within `azd up`); run one again
by hand with `azd hooks run postprovision`. Exit status 0 done, 1 failed (the line says why)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.hooks import health, numbers, roles, seed
from infra.hooks.azd import AzdEnv, HookError, credential, queue_client, secret_client, vault_url
from infra.hooks.wait import Clock, Say


@dataclass
class Azure:
    """How the hooks reach Azure: clients signed in as azd is; tests pass doubles."""

    vault: Callable[[str], Any]  # vault URL -> SecretClient
    queue: Callable[[str, str], Any]  # queue service URL, queue name -> QueueClient

    @classmethod
    def signed_in(cls, env: AzdEnv) -> Azure:
        cred = credential(env)
        return cls(vault=functools.cache(lambda url: secret_client(url, cred)),
                   queue=lambda url, name: queue_client(url, name, cred))


def _required(env: AzdEnv, *names: str) -> list[str]:
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise HookError(f"{', '.join(missing)} not in the azd environment: these are outputs of "
                        "infra/main.bicep; run `azd provision` first.")
    return [env.get(n) for n in names]


def postprovision(env: AzdEnv, azure: Azure, *, say: Say, clock: Clock | None = None) -> int:
    vault_name, account, queue_name = _required(env, "KEY_VAULT_NAME", "AZURE_STORAGE_ACCOUNT_NAME",
                                                "OUTBOUND_QUEUE_NAME")
    if not env.get("AZURE_PRINCIPAL_ID"):
        say("AZURE_PRINCIPAL_ID is empty, so the deployment gave you no roles on the vault: "
            "set the Twilio secrets yourself (docs/deploy.md, Set the secrets).")
        return 0
    vault = azure.vault(vault_url(vault_name))
    queue = azure.queue(f"https://{account}.queue.core.windows.net", queue_name)
    if not roles.wait_for_access(vault, queue, seed.SECRETS[0][1], say=say, clock=clock):
        return 1

    def resolve(other_vault: str, secret: str) -> str:
        return str(azure.vault(vault_url(other_vault)).get_secret(secret).value)

    seed.seed(env, vault, resolve, vault_name=vault_name, say=say)
    return 0


def postdeploy(env: AzdEnv, *, say: Say, clock: Clock | None = None,
               run: numbers.Run = numbers.run_ops) -> int:
    if not health.wait_for_app(env.app_url(), say=say, clock=clock):
        return 1
    numbers.connect(env, say=say, run=run)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.hooks", description=__doc__)
    p.add_argument("hook", choices=["postprovision", "postdeploy"])
    args = p.parse_args(argv)
    env = AzdEnv(os.environ)

    def say(line: str) -> None:
        print(line, flush=True)

    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    try:
        if args.hook == "postprovision":
            return postprovision(env, Azure.signed_in(env), say=say)
        return postdeploy(env, say=say)
    except HookError as exc:
        print(f"infra/hooks {args.hook}: {exc}", file=sys.stderr)
    except ClientAuthenticationError:
        print(f"infra/hooks {args.hook}: no Azure login: run `azd auth login`, then "
              f"`azd hooks run {args.hook}`.", file=sys.stderr)
    except HttpResponseError as exc:
        print(f"infra/hooks {args.hook}: Azure refused a request ({roles.answer(exc)}): "
              f"`azd hooks run {args.hook}` tries again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
