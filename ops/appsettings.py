"""The settings the target's app reads, and where each value comes from.

Locally the app (scripts/run-local) reads the process environment, then local.settings.json,
then the local defaults (`ops.localsettings`). A deployment's app settings are written by
its Bicep from the azd environment at every provision (a value changed in the portal is gone
after the next one), so its azd environment is where they come from; a setting set nowhere
takes the app's own default (`shared.settings.Settings`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ops import azdenv
from ops.localsettings import DEV_DEFAULTS, ROOT, file_values, settings_file
from ops.target import OpsError, Target
from shared.settings import STORAGE_PREFIX, Settings, SettingsError

DEFAULT = "default"


@dataclass(frozen=True)
class Layer:
    label: str  # "environment", "local.settings.json", "local defaults", "azd env dev"
    values: Mapping[str, str]


@dataclass(frozen=True)
class AppSettings:
    """Layers, first wins."""

    layers: tuple[Layer, ...]
    about: str  # whose settings: "the local app", "the deployment of azd env dev"

    def get(self, name: str) -> str | None:
        for layer in self.layers:
            if name in layer.values:
                return layer.values[name]
        return None

    def source(self, name: str) -> str:
        """Where `name`'s value comes from: a layer's label, or `default`."""
        for layer in self.layers:
            if name in layer.values:
                return layer.label
        return DEFAULT

    def merged(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for layer in reversed(self.layers):
            out.update(layer.values)
        return out

    def settings(self) -> Settings:
        """`Settings.from_env` on these values, as the app reads them."""
        try:
            return Settings.from_env(self.merged())
        except SettingsError as exc:
            raise OpsError(f"the settings of {self.about} do not load: {exc}") from None


def local(env: Mapping[str, str] | None = None, root: Path = ROOT) -> AppSettings:
    env = os.environ if env is None else env
    path = settings_file(env, root)
    try:
        values = file_values(path)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    return AppSettings((Layer("environment", dict(env)),
                        Layer(path.name if path.parent == root else str(path), values),
                        Layer("local defaults", DEV_DEFAULTS)), "the local app")


def deployment(found: azdenv.AzdEnv) -> AppSettings:
    """The azd environment's values, and the app settings its Bicep derives from the
    deployment's outputs (infra/app/api.bicep)."""
    values = found.values
    derived = {name: value for name, value in (
        (f"{STORAGE_PREFIX}__accountName", values.get("AZURE_STORAGE_ACCOUNT_NAME")),
        ("WEBHOOK_BASE_URL", values.get("FUNCTION_APP_HOST") and
         f"https://{values['FUNCTION_APP_HOST']}")) if value}
    return AppSettings((Layer(found.label, values),
                        Layer(f"{found.label} (from the deployment's outputs)", derived)),
                       f"the deployment of {found.label}")


def for_target(target: Target, env: Mapping[str, str] | None = None, root: Path = ROOT
               ) -> AppSettings | None:
    """The settings of the app that uses `target`'s storage: the local app's for Azurite,
    the azd environment's for an account in Azure; None when this checkout has no azd
    environment for it."""
    if target.local:
        return local(env, root)
    found = azdenv.find(root, env)
    if found is None:
        return None
    account = found.values.get("AZURE_STORAGE_ACCOUNT_NAME")
    if account and target.account and account != target.account:
        return None  # another deployment's environment
    return deployment(found)
