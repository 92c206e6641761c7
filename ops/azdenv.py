"""The azd environment of a deployment: `.azure/<name>/.env` in the repository.

azd keeps each environment's values there: the deployment's outputs (`FUNCTION_APP_HOST`,
`KEY_VAULT_URL`, `AZURE_STORAGE_ACCOUNT_NAME` ...) and what `azd env set` wrote (the Bicep
parameters, app settings among them). The environment is `AZURE_ENV_NAME` (azd sets it when
it runs a hook), else `defaultEnvironment` in `.azure/config.json` (`azd env select`).
A value azd keeps in a vault (`azd env set-secret`: `akvs://...`) is not the value: it is
left out.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ops.localsettings import ROOT

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
SECRET_REFERENCE = "akvs://"


@dataclass(frozen=True)
class AzdEnv:
    name: str
    values: Mapping[str, str]

    @property
    def label(self) -> str:
        return f"azd env {self.name}"


def find(root: Path = ROOT, env: Mapping[str, str] | None = None) -> AzdEnv | None:
    """The selected azd environment, or None when this checkout has none."""
    env = os.environ if env is None else env
    name = env.get("AZURE_ENV_NAME") or _default_name(root)
    if not name or "/" in name or name.startswith("."):
        return None
    path = root / ".azure" / name / ".env"
    if not path.is_file():
        return None
    return AzdEnv(name, read(path))


def _default_name(root: Path) -> str | None:
    try:
        doc = json.loads((root / ".azure" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = doc.get("defaultEnvironment") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else None


def read(path: Path) -> dict[str, str]:
    """A dotenv file as azd writes it (`NAME="value"`, escapes in double quotes)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _LINE.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        value = _unquote(m[2])
        if not value.startswith(SECRET_REFERENCE):
            out[m[1]] = value
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), text[1:-1])
    return text
