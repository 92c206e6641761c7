"""The Bicep under infra/, checked offline: it parses, checkov passes it, its app settings
match what the app reads, and the app identity gets exactly the roles it needs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.settings import PLATFORM_SETTINGS, REQUIRED_IN_AZURE, SETTING_NAMES

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
}
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}


def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(text=path.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", BICEP_FILES, ids=[str(p.relative_to(INFRA)) for p in BICEP_FILES])
def test_every_bicep_file_parses(path: Path) -> None:
    parsed = parse(path)
    for name, param in parsed.get("parameters", {}).items():
        decorators = [d["type"] for d in param.get("decorators", [])]
        assert "description" in decorators, f"{path.name}: param {name} has no @description"


def test_checkov_passes_with_no_parse_errors() -> None:
    res = subprocess.run([str(CHECKOV), "-d", str(INFRA), "--framework", "bicep",
                          "--skip-download", "-o", "json"], capture_output=True, text=True,
                         timeout=300)
    report = json.loads(res.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert failed == []
    assert summary["passed"] > 0
    # Every skip carries a reason, and the README lists it.
    readme = (ROOT / "README.md").read_text()
    for check in report["results"]["skipped_checks"]:
        assert check["check_result"]["suppress_comment"], check["check_id"]
        assert check["check_id"] in readme, f"{check['check_id']} skipped but not in README"


def test_app_settings_match_what_the_app_reads() -> None:
    site_settings = parse(INFRA / "app" / "api.bicep")["resources"]["appSettings"]
    names = set(site_settings["config"]["properties"])
    assert REQUIRED_IN_AZURE - names == set(), "required by the app, not set by infra/"
    assert names - SETTING_NAMES - PLATFORM_SETTINGS == set(), "set by infra/, unknown to the app"


def _assignments(parsed: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, res in parsed["resources"].items():
        if res["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = res["config"]
        out.append((name, config.get("config", config)))  # loops and conditions nest it
    return out


def test_app_identity_gets_exactly_its_roles() -> None:
    parsed = parse(INFRA / "app" / "rbac.bicep")
    roles = parsed["variables"]["roles"]["value"]
    text = (INFRA / "app" / "rbac.bicep").read_text()
    for guid, role_name in ROLES.items():
        assert re.search(rf"'{guid}' // {role_name}$", text, re.M), role_name
    granted = set()
    for name, config in _assignments(parsed):
        assert config["name"]["function"]["type"] == "guid", name
        if config["properties"]["principalId"] != "appPrincipalId":
            continue
        res = parsed["resources"][name]["config"]
        loop = res.get("loop_type")
        refs = ([item["operator"]["operands"]["operand_2"] for item in loop["detail"]["array_name"]]
                if loop else [config["properties"]["roleDefinitionId"]["function"]["parameters"]
                              ["resource_name_1"]["operator"]["operands"]["operand_2"]])
        granted |= {roles[ref] for ref in refs}
    assert {ROLES[g] for g in granted} == set(ROLES.values())


def test_no_broad_role_anywhere() -> None:
    text = "\n".join(p.read_text() for p in BICEP_FILES).lower()
    assert [n for g, n in BROAD_ROLES.items() if g in text] == []


def test_outputs_for_azd_and_no_secret_in_them() -> None:
    main = parse(INFRA / "main.bicep")
    outputs = main["outputs"]
    for name in ("AZURE_FUNCTION_APP_NAME", "FUNCTION_APP_HOST", "TWILIO_VOICE_WEBHOOK_URL",
                 "TWILIO_SMS_WEBHOOK_URL", "TWILIO_STATUS_CALLBACK_URL", "KEY_VAULT_NAME",
                 "KEY_VAULT_URL", "OUTBOUND_QUEUE_NAME", "AZURE_STORAGE_ACCOUNT_NAME"):
        assert name in outputs
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs)
    secure = {n for path in BICEP_FILES for n, p in parse(path).get("parameters", {}).items()
              if any(d["type"] == "secure" for d in p.get("decorators", []))}
    assert secure >= {"twilioAccountSid", "twilioAuthToken"}
    for path in BICEP_FILES:
        for name, output in parse(path).get("outputs", {}).items():
            assert not secure & set(re.findall(r"\w+", json.dumps(output["value"]))), \
                f"{path.name}: output {name} uses a secure parameter"


def test_parameters_file_names_only_known_parameters() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(params) <= set(parse(INFRA / "main.bicep")["parameters"])
