"""infra/ read offline: pycep's parse of every Bicep file, and the few accessors the infra tests
share. pycep checks grammar only and writes identifiers and string literals alike (`location`
and `'eastus'` both come back as a str), so a value that must not be hard-coded is checked to
name a declared parameter."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


class Infra:
    """The Bicep files under one directory (infra/ or a test's altered copy of it)."""

    def __init__(self, root: Path = INFRA) -> None:
        self.root = root
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


def decorator(param: dict[str, Any], kind: str) -> Any:
    """The argument of a parameter's decorator (`min_length`, `allowed`, ...), or None."""
    for dec in param.get("decorators", []):
        if dec["type"] == kind:
            return dec.get("argument", True)
    return None
