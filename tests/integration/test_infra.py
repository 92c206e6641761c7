"""The Bicep under infra/, checked offline: it parses, checkov passes it, its app settings
match what the app reads, and each principal gets exactly the roles it needs. What the
compiler, ARM and Flex Consumption refuse is in test_infra_rules.py."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from shared.settings import PLATFORM_SETTINGS, REQUIRED_IN_AZURE, SETTING_NAMES
from tests.integration.bicep import INFRA, ROOT, Infra

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
RBAC = "app/rbac.bicep"
HOST_OVERRIDE = "AzureFunctionsJobHost__"
# Role ids from Microsoft's built-in roles reference (role-based-access-control/built-in-roles).
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
}
# (role, scope symbol in rbac.bicep) per principal.
APP_ROLES = {
    ("Storage Blob Data Owner", "storage"),  # host storage and the deployment package
    ("Storage Queue Data Contributor", "storage"),  # the outbound, dead-letter and event queues
    ("Storage Table Data Contributor", "storage"),  # the jobs ledger
    ("Monitoring Metrics Publisher", "applicationInsights"),  # telemetry with local auth off
    ("Key Vault Secrets User", "vault"),  # read the Twilio secrets
}
USER_ROLES = {
    ("Key Vault Secrets Officer", "vault"),  # set and rotate the secrets
    ("Storage Queue Data Contributor", "storage"),  # enqueue test jobs, read dead letters
    ("Storage Table Data Contributor", "storage"),  # read a job's row, seed a replay's
}
PRODUCER_ROLES = {
    ("Storage Queue Data Message Sender", "outboundQueue"),  # add jobs, to that queue only
}
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}


@pytest.fixture(scope="module")
def infra() -> Infra:
    return Infra(INFRA)


@pytest.mark.parametrize("rel", Infra(INFRA).files)
def test_every_bicep_file_parses(infra: Infra, rel: str) -> None:
    for name, param in infra.params(rel).items():
        decorators = [d["type"] for d in param.get("decorators", [])]
        assert "description" in decorators, f"{rel}: param {name} has no @description"


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
    # Every skip carries a reason, and docs/deploy.md lists it.
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for check in report["results"]["skipped_checks"]:
        assert check["check_result"]["suppress_comment"], check["check_id"]
        assert check["check_id"] in deploy, f"{check['check_id']} skipped but not in docs/deploy.md"


def test_app_settings_match_what_the_app_reads(infra: Infra) -> None:
    names = set(infra.resources("app/api.bicep")["appSettings"]["properties"])
    # AzureFunctionsJobHost__a__b overrides host.json's a.b for the host: each must name a
    # setting host.json has, or the host ignores it without a word.
    overrides = {n for n in names if n.startswith(HOST_OVERRIDE)}
    host = json.loads((ROOT / "host.json").read_text())
    for name in overrides:
        node: Any = host
        for key in name.removeprefix(HOST_OVERRIDE).split("__"):
            node = node.get(key) if isinstance(node, dict) else None
        assert node is not None, f"{name} overrides nothing in host.json"
    names -= overrides
    assert REQUIRED_IN_AZURE - names == set(), "required by the app, not set by infra/"
    assert names - SETTING_NAMES - PLATFORM_SETTINGS == set(), "set by infra/, unknown to the app"


def _role_refs(infra: Infra, name: str) -> list[str]:
    """The `roles.<x>` keys one assignment (or loop of assignments) grants."""
    config = infra.parse(RBAC)["resources"][name]["config"]
    loop = config.get("loop_type")
    body = config.get("config", config)
    role = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    if not loop or role != loop["detail"]["item_name"]:  # one role (maybe for many principals)
        return [role["operator"]["operands"]["operand_2"]]
    items = loop["detail"]["array_name"]
    if isinstance(items, str):  # a variable: the non-empty branch of `empty(x) ? [] : [...]`
        value = infra.parse(RBAC)["variables"][items]["value"]
        items = value["operator"]["operands"]["false_value"]
    return [item["operator"]["operands"]["operand_2"] for item in items]


def _granted(infra: Infra, principal: str) -> set[tuple[str, str]]:
    roles = infra.parse(RBAC)["variables"]["roles"]["value"]
    granted = set()
    for name, config in infra.resources(RBAC, "Microsoft.Authorization/roleAssignments").items():
        assert config["name"]["function"]["type"] == "guid", name
        if config["properties"]["principalId"] == principal:
            granted |= {(ROLES[roles[ref]], config["scope"]) for ref in _role_refs(infra, name)}
    return granted


def test_each_principal_gets_exactly_its_roles(infra: Infra) -> None:
    text = infra.text(RBAC)
    for guid, role_name in ROLES.items():
        if guid in text:
            assert re.search(rf"'{guid}' // {role_name}$", text, re.M), role_name
    assert _granted(infra, "appPrincipalId") == APP_ROLES
    assert _granted(infra, "userPrincipalId") == USER_ROLES
    assert _granted(infra, "producerId") == PRODUCER_ROLES


def test_no_broad_role_anywhere(infra: Infra) -> None:
    text = "\n".join(infra.text(rel) for rel in infra.files).lower()
    assert [n for g, n in BROAD_ROLES.items() if g in text] == []


def test_outputs_for_azd_and_no_secret_in_them(infra: Infra) -> None:
    outputs = infra.parse("main.bicep")["outputs"]
    for name in ("AZURE_FUNCTION_APP_NAME", "FUNCTION_APP_HOST", "TWILIO_VOICE_WEBHOOK_URL",
                 "TWILIO_SMS_WEBHOOK_URL", "TWILIO_STATUS_CALLBACK_URL", "KEY_VAULT_NAME",
                 "KEY_VAULT_URL", "OUTBOUND_QUEUE_NAME", "AZURE_STORAGE_ACCOUNT_NAME",
                 "APPLICATIONINSIGHTS_NAME"):
        assert name in outputs
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs)
    # No secret goes through the deployment at all (infra/hooks writes them): no @secure()
    # parameter, so none can reach an output or a plain module parameter.
    secure = [f"{rel}: {n}" for rel in infra.files for n, p in infra.params(rel).items()
              if any(d["type"] == "secure" for d in p.get("decorators", []))]
    assert secure == []


def test_parameters_file_names_only_known_parameters(infra: Infra) -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(params) <= set(infra.params("main.bicep"))


def test_the_app_accepts_every_value_the_deployment_can_set(infra: Infra) -> None:
    """Each sizing parameter that becomes an app setting: its default is the app's own, and its
    smallest and largest values start the app (a value the app refused would fail every
    invocation after a provision that `azd env set` allowed)."""
    from shared.settings import Settings
    from tests.integration.test_infra_rules import SIZING

    local = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
             "KEY_VAULT_URL": "https://kv-app.vault.azure.net"}
    defaults = Settings.from_env(local)
    main = infra.params("main.bicep")
    checked = 0
    for param, where, (low, high) in SIZING.values():
        setting = where.removeprefix("appSettings.")
        if where == setting or setting.startswith(HOST_OVERRIDE):
            continue
        field = setting.lower()
        assert getattr(defaults, field) == main[param]["default"], setting
        for value in (low, high, main[param]["default"]):
            assert getattr(Settings.from_env({**local, setting: str(value)}), field) == value
        checked += 1
    assert checked == 4  # TWILIO_MAX_CONCURRENCY and the throttle and retention settings
