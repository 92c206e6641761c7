"""infra/ read offline: pycep's parse of every Bicep file, main.parameters.json, the project
files azd and the Functions host read beside it (azure.yaml, host.json), and the few accessors
the infra tests share. pycep checks grammar only and writes identifiers and string literals
alike (`location` and `'eastus'` both come back as a str), so a value that must not be
hard-coded is checked to name a declared parameter."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# Files outside infra/ that the infra rules read: a test's altered copy holds them too.
PROJECT_FILES = ("azure.yaml", "host.json")
# `${NAME}`, `${NAME=default}` or `${NAME:=default}` (azd's substitution, drone/envsubst).
AZD_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::?=(?P<default>[^}]*))?\}$")


class Infra:
    """The Bicep files under one directory (infra/ or a test's altered copy of it)."""

    def __init__(self, root: Path = INFRA) -> None:
        self.root = root
        self.project = root.parent
        self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.bicep"))

    def text(self, rel: str) -> str:
        return (self.root / rel).read_text()

    @functools.cache  # noqa: B019 - one Infra per directory, kept for the test session
    def parse(self, rel: str) -> dict[str, Any]:
        return BicepParser().parse(text=self.text(rel))  # type: ignore[no-any-return]

    def params(self, rel: str) -> dict[str, Any]:
        return self.parse(rel).get("parameters") or {}

    def resources(self, rel: str, type_: str | None = None) -> dict[str, dict[str, Any]]:
        """Declared (not `existing`) resource configs by symbol, with pycep's condition/loop
        nesting removed."""
        out = {}
        for name, res in (self.parse(rel).get("resources") or {}).items():
            if not res["existing"] and (type_ is None or res["type"] == type_):
                config = res["config"]
                out[name] = config.get("config", config) if "loop_type" in config or "condition" in config else config
        return out

    def modules(self, rel: str) -> dict[str, dict[str, Any]]:
        return self.parse(rel).get("modules") or {}

    def mapping(self) -> dict[str, Any]:
        """main.parameters.json: Bicep parameter -> its value (azd fills `${...}`)."""
        return dict(json.loads((self.root / "main.parameters.json").read_text())["parameters"])

    def azd_variable(self, param: str) -> tuple[str, str | None] | None:
        """(azd variable, default) a main.bicep parameter is mapped from, or None."""
        value = self.mapping().get(param, {}).get("value")
        m = AZD_VARIABLE.match(value) if isinstance(value, str) else None
        return (m["name"], m["default"]) if m else None

    def azure_yaml(self) -> dict[str, Any]:
        return dict(yaml.safe_load((self.project / "azure.yaml").read_text()))

    def host_json(self) -> dict[str, Any]:
        return dict(json.loads((self.project / "host.json").read_text()))


def decorator(param: dict[str, Any], kind: str) -> Any:
    """The argument of a parameter's decorator (`min_length`, `allowed`, ...), or None."""
    for dec in param.get("decorators", []):
        if dec["type"] == kind:
            return dec.get("argument", True)
    return None
