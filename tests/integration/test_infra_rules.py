"""What `bicep build`, ARM and Flex Consumption refuse, checked offline (the Bicep CLI cannot run
here; pycep and checkov check grammar, not types or platform rules), and the dead-letter alert
checked against what the app logs.

Each rule is a function returning the problems it finds in an `Infra`. The suite runs every rule
on infra/ (no problem allowed) and on copies of infra/ with one known defect put back, where the
rule must report it: a rule that cannot fail is caught here, not in production.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import deadletters
from tests.integration.bicep import INFRA, ROOT, Infra, decorator

MAIN = "main.bicep"
ALERTS = "app/alerts.bicep"

# Bicep: "@secure() can only be attached to targets of type object | string" (and the other
# decorators likewise); a module is compiled even when its `if` is false (Azure/bicep#10892).
DECORATOR_TYPES = {
    "secure": {"string", "object"},
    "min_length": {"string", "array"},
    "max_length": {"string", "array"},
    "min_value": {"int"},
    "max_value": {"int"},
}

# Where Flex Consumption exists: the @allowed list of the official quickstart,
# Azure-Samples/functions-quickstart-python-http-azd infra/main.bicep (commit fe29236).
OFFICIAL_FLEX_REGIONS = (
    "australiaeast", "australiasoutheast", "brazilsouth", "canadacentral", "centralindia",
    "centralus", "eastasia", "eastus", "eastus2", "eastus2euap", "francecentral",
    "germanywestcentral", "italynorth", "japaneast", "koreacentral", "northcentralus",
    "northeurope", "norwayeast", "southafricanorth", "southcentralus", "southeastasia",
    "southindia", "spaincentral", "swedencentral", "uaenorth", "uksouth", "ukwest",
    "westcentralus", "westeurope", "westus", "westus2", "westus3",
)

# What Flex Consumption refuses: Microsoft's "Flex Consumption plan deprecations" table
# (learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations),
# ARM error 51021 for site properties; see ../shared/FACTS.md "Bicep offline". Runtime, memory
# and scale go in properties.functionAppConfig.
FLEX_REFUSED_SITE_CONFIG = {
    "ftpsState", "linuxFxVersion", "windowsFxVersion", "alwaysOn", "use32BitWorkerProcess",
    "functionAppScaleLimit", "netFrameworkVersion",
}
FLEX_REFUSED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION", "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_TIME_ZONE", "TZ", "FUNCTIONS_WORKER_PROCESS_COUNT", "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED", "WEBSITE_NODE_DEFAULT_VERSION",
}
# The siteConfig and site properties this app sets, each checked against that table; a new one
# is a deliberate change to these lists, not an accident.
SITE_CONFIG_REVIEWED = {"minTlsVersion", "scmMinTlsVersion", "http20Enabled"}
SITE_PROPERTIES_REVIEWED = {"serverFarmId", "httpsOnly", "clientCertEnabled",
                            "keyVaultReferenceIdentity", "siteConfig", "functionAppConfig"}

# The one redundancy every region above offers: ZRS/GZRS need availability zones, GRS/GZRS a
# paired region (Azure Storage "regions that support ZRS/GZRS"; "Azure region pairs").
SKU_IN_EVERY_REGION = "Standard_LRS"

# The Functions host's own poison move, logged as a WARNING (category Host.Triggers.Queue):
# azure-webjobs-sdk QueueProcessor.CopyMessageToPoisonQueueAsync, the same text in
# Microsoft.Azure.WebJobs.Extensions.Storage.Queues 5.x.
HOST_POISON_FORMAT = "Message has reached MaxDequeueCount of {0}. Moving message to queue '{1}'."
HOST_POISON_KIND = "host_poison"


def _param_names(infra: Infra, rel: str) -> set[str]:
    return set(infra.params(rel))


# --- Compiles --------------------------------------------------------------------------------

def decorator_problems(infra: Infra) -> list[str]:
    """Decorators only on the types Bicep allows; @allowed values and defaults of the right type."""
    problems = []
    for rel in infra.files:
        for name, param in infra.params(rel).items():
            where = f"{rel}: param {name} ({param['type']})"
            for kind, types in DECORATOR_TYPES.items():
                if decorator(param, kind) is not None and param["type"] not in types:
                    problems.append(f"{where}: @{kind} is only allowed on {sorted(types)}")
            allowed = decorator(param, "allowed")
            if allowed is not None:
                py_type = {"string": str, "int": int}.get(param["type"])
                if py_type and not all(isinstance(v, py_type) and not isinstance(v, bool) for v in allowed):
                    problems.append(f"{where}: @allowed values {allowed} are not all {param['type']}")
                default = param.get("default")
                if isinstance(default, str | int) and default not in allowed:
                    problems.append(f"{where}: default {default!r} is not in @allowed")
    return problems


def module_wiring_problems(infra: Infra) -> list[str]:
    """Every module file exists, gets every parameter it requires and only ones it declares, and
    every `<module>.outputs.<name>` used is declared."""
    problems = []
    for rel in infra.files:
        symbols = {}
        for sym, mod in infra.modules(rel).items():
            target = (Path(rel).parent / mod["detail"]["path"]).as_posix()
            symbols[sym] = target
            if target not in infra.files:
                problems.append(f"{rel}: module {sym}: no file {target}")
                continue
            config = mod["config"].get("config", mod["config"])
            passed = set(config.get("params") or {})
            declared = infra.params(target)
            required = {n for n, p in declared.items() if p.get("default") is None}
            if passed - set(declared):
                problems.append(f"{rel}: module {sym} passes undeclared {sorted(passed - set(declared))}")
            if required - passed:
                problems.append(f"{rel}: module {sym} misses required {sorted(required - passed)}")
        for sym, out in re.findall(r"\b(\w+)\.outputs\.(\w+)", infra.text(rel)):
            target = symbols.get(sym)
            if target in infra.files and out not in (infra.parse(target).get("outputs") or {}):
                problems.append(f"{rel}: {sym}.outputs.{out} is not an output of {target}")
    return problems


# --- Valid on Flex Consumption ---------------------------------------------------------------

def flex_problems(infra: Infra) -> list[str]:
    """No site property or app setting the Flex deprecations table refuses; runtime in
    functionAppConfig."""
    problems = []
    for rel in infra.files:
        for name, site in infra.resources(rel, "Microsoft.Web/sites").items():
            props = site.get("properties") or {}
            site_config = props.get("siteConfig") or {}
            for key in sorted(set(site_config) & FLEX_REFUSED_SITE_CONFIG):
                problems.append(f"{rel}: {name}.siteConfig.{key} is refused by Flex Consumption")
            for key in sorted(set(site_config) - SITE_CONFIG_REVIEWED - {"appSettings"}):
                problems.append(f"{rel}: {name}.siteConfig.{key} not reviewed against the Flex table")
            for key in sorted(set(props) - SITE_PROPERTIES_REVIEWED):
                problems.append(f"{rel}: {name}.properties.{key} not reviewed against the Flex table")
            settings = {s["name"] for s in site_config.get("appSettings") or []}
            problems += [f"{rel}: {name} app setting {s} is refused by Flex Consumption"
                         for s in sorted(settings & FLEX_REFUSED_SETTINGS)]
            runtime = (props.get("functionAppConfig") or {}).get("runtime") or {}
            if runtime.get("name") != "python":
                problems.append(f"{rel}: {name}: functionAppConfig.runtime.name must be python")
        for name, config in infra.resources(rel, "Microsoft.Web/sites/config").items():
            settings = set(config.get("properties") or {})
            problems += [f"{rel}: {name} app setting {s} is refused by Flex Consumption"
                         for s in sorted(settings & FLEX_REFUSED_SETTINGS)]
    return problems


# --- Deploys in every region it offers -------------------------------------------------------

def location_problems(infra: Infra) -> list[str]:
    """`location` offers exactly the Flex regions, and every resource takes it from there."""
    problems = []
    allowed = decorator(infra.params(MAIN).get("location", {}), "allowed")
    if allowed is None or tuple(allowed) != OFFICIAL_FLEX_REGIONS:
        problems.append(f"{MAIN}: location must be @allowed to the official Flex regions, is {allowed}")
    for rel in infra.files:
        params = _param_names(infra, rel)
        for name, res in infra.resources(rel).items():
            loc = res.get("location")
            if loc is None or loc in params:
                continue
            if not (loc == "global" and name == "actionGroup"):
                problems.append(f"{rel}: {name}.location {loc!r} does not come from a parameter")
        for sym, mod in infra.modules(rel).items():
            loc = (mod["config"].get("params") or {}).get("location")
            if loc is not None and loc not in params:
                problems.append(f"{rel}: module {sym} gets location {loc!r}, not a parameter")
    return problems


def storage_sku_problems(infra: Infra) -> list[str]:
    problems = []
    for rel in infra.files:
        for name, res in infra.resources(rel, "Microsoft.Storage/storageAccounts").items():
            sku = (res.get("sku") or {}).get("name")
            if sku not in _param_names(infra, rel):
                problems.append(f"{rel}: {name}.sku.name {sku!r} is hard-coded")
    main = infra.params(MAIN).get("storageSku", {})
    if main.get("default") != SKU_IN_EVERY_REGION:
        problems.append(f"{MAIN}: storageSku must default to {SKU_IN_EVERY_REGION}, the one SKU every region has")
    if (infra.modules(MAIN)["storage"]["config"]["params"] or {}).get("sku") != "storageSku":
        problems.append(f"{MAIN}: module storage must get sku: storageSku")
    return problems


def principal_type_problems(infra: Infra) -> list[str]:
    """A literal principalType only for the app's managed identity (always a service principal);
    the deploying principal's type is a parameter azd fills from its login."""
    problems = []
    for rel in infra.files:
        params = infra.params(rel)
        for name, res in infra.resources(rel, "Microsoft.Authorization/roleAssignments").items():
            props = res["properties"]
            if props["principalId"] == "appPrincipalId":
                if props.get("principalType") != "ServicePrincipal":
                    problems.append(f"{rel}: {name}: the app identity is a ServicePrincipal")
            elif props.get("principalType") not in params:
                problems.append(f"{rel}: {name}.principalType {props.get('principalType')!r} is hard-coded")
            else:
                p = params[props["principalType"]]
                if not {"User", "ServicePrincipal"} <= set(decorator(p, "allowed") or []):
                    problems.append(f"{rel}: {name}: its principal type must allow User and ServicePrincipal")
    main = infra.params(MAIN).get("principalType")
    if main is None or main.get("default") != "User":
        problems.append(f"{MAIN}: principalType must be a parameter defaulting to User")
    rbac = infra.modules(MAIN)["rbac"]["config"]["params"]
    if rbac.get("userPrincipalType") != "principalType" or rbac.get("appPrincipalId") is None:
        problems.append(f"{MAIN}: module rbac must get userPrincipalType: principalType")
    elif "identity" not in json.dumps(rbac["appPrincipalId"]):
        problems.append(f"{MAIN}: appPrincipalId must be the app's managed identity")
    mapping = json.loads((infra.root / "main.parameters.json").read_text())["parameters"]
    if not mapping.get("principalType", {}).get("value", "").startswith("${AZURE_PRINCIPAL_TYPE"):
        problems.append("main.parameters.json: principalType must come from azd's AZURE_PRINCIPAL_TYPE")
    return problems


def reprovision_problems(infra: Infra) -> list[str]:
    """`azd down` then `azd up` with the same environment name: a purge-protected vault's name
    stays taken for its whole retention period (ARM 409), so the name must change with the new
    environment's identity, and purge protection stays on (the secrets are the product's)."""
    problems = []
    name = str(infra.parse(MAIN)["variables"].get("keyVaultName", {}).get("value", ""))
    if "identity.outputs.principalId" not in name:
        problems.append(f"{MAIN}: keyVaultName must include the app identity's principalId "
                        f"(a new one after azd down), is {name!r}")
    if (infra.modules(MAIN)["keyVault"]["config"]["params"] or {}).get("name") != "keyVaultName":
        problems.append(f"{MAIN}: module keyVault must be named keyVaultName")
    for res_name, vault in infra.resources("app/keyvault.bicep", "Microsoft.KeyVault/vaults").items():
        if (vault.get("properties") or {}).get("enablePurgeProtection") is not True:
            problems.append(f"app/keyvault.bicep: {res_name}.enablePurgeProtection must stay true")
    return problems


# --- Roles before code -----------------------------------------------------------------------

def ordering_problems(infra: Infra) -> list[str]:
    """Every role assignment lives in app/rbac.bicep, and the app (and so azd's code deploy)
    comes after it."""
    problems = [f"{rel}: role assignments belong in app/rbac.bicep"
                for rel in infra.files if rel != "app/rbac.bicep"
                and infra.resources(rel, "Microsoft.Authorization/roleAssignments")]
    modules = infra.modules(MAIN)
    if "rbac" not in (modules["api"]["config"].get("dependsOn") or []):
        problems.append(f"{MAIN}: module api must depend on rbac")
    if re.search(r'"api"', json.dumps(modules["rbac"]["config"])):
        problems.append(f"{MAIN}: module rbac must not wait for api")
    return problems


# --- Alerts on dead letters ------------------------------------------------------------------

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\*)|([A-Za-z_]\w*)')


def kusto_parse(pattern: str, text: str) -> dict[str, str] | None:
    """Kusto `parse <col> with <pattern>` in its default (simple) mode: literals must match in
    order from the start; a column or `*` takes the text up to the next literal, the last one
    takes the rest."""
    tokens = _TOKEN.findall(pattern)
    regex = ""
    for i, (literal, star, column) in enumerate(tokens):
        lazy = "" if i == len(tokens) - 1 else "?"
        regex += (f"(?P<{column}>.*{lazy})" if column else f".*{lazy}" if star
                  else re.escape(literal.replace('\\"', '"')))
    match = re.match(regex, text, re.S)
    return match.groupdict() if match else None


def alert_query(infra: Infra) -> str:
    rule = infra.resources(ALERTS, "Microsoft.Insights/scheduledQueryRules")["deadLetterAlert"]
    ref = rule["properties"]["criteria"]["allOf"][0]["query"]
    return str(infra.parse(ALERTS)["variables"][ref]["value"])


def parse_patterns(query: str) -> list[str]:
    return [m.strip().rstrip(";") for m in re.findall(r"\|\s*parse message with (.+)$", query, re.M)]


def alert_problems(infra: Infra, prefix: str = deadletters.LOG_PREFIX,
                   fields: tuple[str, ...] = deadletters.LOG_FIELDS,
                   kinds: tuple[str, ...] = deadletters.KINDS) -> list[str]:
    """The alert matches the app's dead-letter line (prefix and fields, both ways), every kind,
    and the host's poison move; it fires on one record and tells someone when alertEmail is set."""
    problems = []
    query = alert_query(infra)
    app = [p for p in parse_patterns(query) if p.startswith(f'"{prefix} ')]
    if len(app) != 1:
        return [f"{ALERTS}: no `parse message with \"{prefix} ...` in the query"]
    tokens = _TOKEN.findall(app[0])
    parsed = [c for _, _, c in tokens if c]
    literals = [lit for lit, star, c in tokens if not c and not star]
    problems += [f"{ALERTS}: field {f} is logged by the app but not parsed by the alert"
                 for f in fields if f not in parsed]
    problems += [f"{ALERTS}: field {f} is parsed by the alert but not logged by the app"
                 for f in parsed if f not in fields]
    expected = [f"{prefix} {fields[0]}="] + [f" {f}=" for f in fields[1:]]
    if not problems and literals != expected:
        problems.append(f"{ALERTS}: parse literals {literals} != the app's {expected}")
    if f'startswith "{prefix} "' not in query:
        problems.append(f"{ALERTS}: the query must select lines starting with {prefix!r}")
    host = [p for p in parse_patterns(query) if "Moving message to queue" in p]
    sample = HOST_POISON_FORMAT.format(5, "twilio-outbound-poison")
    starts = re.findall(r'startswith "([^"]+)"', query)
    if not host or (kusto_parse(host[0], sample) or {}).get("queue") != "twilio-outbound-poison":
        problems.append(f"{ALERTS}: the query must parse the host's poison move: {sample}")
    elif not any(sample.startswith(s) for s in starts if not s.startswith(prefix)):
        problems.append(f"{ALERTS}: no `startswith` selects the host's poison move")
    if f'kind = "{HOST_POISON_KIND}"' not in query or HOST_POISON_KIND in kinds:
        problems.append(f"{ALERTS}: host poison moves must be kind {HOST_POISON_KIND}, not an app kind")
    rule = infra.resources(ALERTS, "Microsoft.Insights/scheduledQueryRules")["deadLetterAlert"]
    props = rule["properties"]
    listed = re.search(r"Kinds: (.+?) \(from the app\); (\w+) \(", props.get("description", ""))
    if not listed or listed[1].split(", ") != list(kinds) or listed[2] != HOST_POISON_KIND:
        problems.append(f"{ALERTS}: description must list the kinds {list(kinds)} and {HOST_POISON_KIND}")
    criterion = props["criteria"]["allOf"][0]
    if (criterion.get("timeAggregation"), criterion.get("operator"), criterion.get("threshold")) != (
            "Count", "GreaterThan", 0):
        problems.append(f"{ALERTS}: the alert must fire on a single dead letter (Count > 0)")
    projected = re.findall(r"\|\s*project (.+)$", query, re.M)
    dims = {d["name"] for d in criterion.get("dimensions") or []}
    if not projected or not dims <= {c.strip() for c in projected[-1].split(",")}:
        problems.append(f"{ALERTS}: dimensions {sorted(dims)} must be projected by the query")
    if props.get("enabled") is not True:
        problems.append(f"{ALERTS}: the rule must be enabled")
    if (props.get("evaluationFrequency"), props.get("windowSize")) != ("PT5M", "PT15M"):
        problems.append(f"{ALERTS}: evaluate every PT5M over PT15M (docs/deploy.md explains why)")
    if props.get("scopes") != ["applicationInsightsId"]:
        problems.append(f"{ALERTS}: the rule must be scoped to Application Insights")
    groups = json.dumps(props.get("actions"))
    action = infra.parse(ALERTS)["resources"].get("actionGroup", {}).get("config", {})
    if "alertEmail" not in json.dumps(action.get("condition")) or "alertEmail" not in groups:
        problems.append(f"{ALERTS}: the action group must exist, and be used, only when alertEmail is set")
    passed = infra.modules(MAIN)["alerts"]["config"]["params"]
    if passed.get("alertEmail") != "alertEmail" or "applicationInsightsId" not in json.dumps(
            passed.get("applicationInsightsId")):
        problems.append(f"{MAIN}: module alerts must get alertEmail and the Application Insights id")
    mapping = json.loads((infra.root / "main.parameters.json").read_text())["parameters"]
    if not mapping.get("alertEmail", {}).get("value", "").startswith("${ALERT_EMAIL"):
        problems.append("main.parameters.json: alertEmail must come from ALERT_EMAIL")
    return problems


def readme_alert_section(readme: str) -> str:
    """The section "Alerts on dead letters" of docs/deploy.md, to the next heading."""
    start = readme.index("\n## Alerts on dead letters\n") + 1
    end = min((i for i in (readme.find("\n## ", start), readme.find("\n### ", start)) if i > 0),
              default=len(readme))
    return readme[start:end]


def readme_problems(infra: Infra, readme: str) -> list[str]:
    """The docs' query parses what the alert parses, and its table names every kind."""
    section = readme_alert_section(readme)
    problems = [f"docs/deploy.md: the Kusto query must `parse message with {p}` as the alert does"
                for p in parse_patterns(alert_query(infra)) if f"parse message with {p}" not in section]
    table = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    expected = set(deadletters.KINDS) | {HOST_POISON_KIND}
    problems += [f"docs/deploy.md: kind {k} missing from the alerts table" for k in sorted(expected - table)]
    problems += [f"docs/deploy.md: kind {k} in the alerts table is not logged" for k in sorted(table - expected)]
    return problems


def sampling_problems(host_json: dict[str, Any]) -> list[str]:
    """Adaptive sampling must not drop the trace lines the alert counts."""
    sampling = host_json.get("logging", {}).get("applicationInsights", {}).get("samplingSettings", {})
    excluded = {t.strip() for t in sampling.get("excludedTypes", "").split(";")}
    if sampling.get("isEnabled", True) and "Trace" not in excluded:
        return ["host.json: samplingSettings.excludedTypes must include Trace (the alert counts traces)"]
    return []


# --- The rules on infra/ ---------------------------------------------------------------------

INFRA_RULES: dict[str, Callable[[Infra], list[str]]] = {
    "decorators": decorator_problems,
    "module wiring": module_wiring_problems,
    "flex": flex_problems,
    "location": location_problems,
    "storage sku": storage_sku_problems,
    "principal type": principal_type_problems,
    "re-provision": reprovision_problems,
    "ordering": ordering_problems,
    "alert": alert_problems,
}


@pytest.fixture(scope="module")
def infra() -> Infra:
    return Infra(INFRA)


@pytest.mark.parametrize("rule", list(INFRA_RULES))
def test_infra_keeps_the_rule(infra: Infra, rule: str) -> None:
    assert INFRA_RULES[rule](infra) == []


def test_readme_query_and_kinds_match_the_alert(infra: Infra) -> None:
    assert readme_problems(infra, (ROOT / "docs" / "deploy.md").read_text()) == []


def test_traces_are_never_sampled_away() -> None:
    assert sampling_problems(json.loads((ROOT / "host.json").read_text())) == []


def test_the_alert_parses_every_line_the_app_logs(infra: Infra, caplog: pytest.LogCaptureFixture) -> None:
    """The real log_dead_letter line, for every kind, parsed as Kusto would."""
    pattern = next(p for p in parse_patterns(alert_query(infra)) if p.startswith(f'"{deadletters.LOG_PREFIX} '))
    reason = "Twilio 21211: 'To' is invalid queue=x reason=y\nsecond line"
    for kind in deadletters.KINDS:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="shared.deadletters"):
            deadletters.log_dead_letter(kind=kind, job_key="job 7", twilio_code=21211,
                                        queue="twilio-outbound-rejected", reason=reason)
        [record] = caplog.records
        assert record.levelno == logging.WARNING
        assert kusto_parse(pattern, record.getMessage()) == {
            "kind": kind, "job_key": "job_7", "twilio_code": "21211",
            "queue": "twilio-outbound-rejected", "reason": reason.replace("\n", " ")}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shared.deadletters"):
        deadletters.log_dead_letter(kind="invalid_job", job_key=None, twilio_code=None,
                                    queue="twilio-outbound-rejected", reason="not JSON")
    parsed = kusto_parse(pattern, caplog.records[0].getMessage())
    assert parsed is not None and (parsed["job_key"], parsed["twilio_code"]) == ("-", "-")


@pytest.mark.parametrize(("prefix", "fields", "kinds"), [
    pytest.param("deadletter", deadletters.LOG_FIELDS, deadletters.KINDS, id="prefix renamed in the app"),
    pytest.param(deadletters.LOG_PREFIX, (*deadletters.LOG_FIELDS, "attempts"), deadletters.KINDS,
                 id="field added in the app"),
    pytest.param(deadletters.LOG_PREFIX, deadletters.LOG_FIELDS[1:], deadletters.KINDS,
                 id="field dropped in the app"),
    pytest.param(deadletters.LOG_PREFIX, deadletters.LOG_FIELDS, (*deadletters.KINDS, "expired"),
                 id="kind added in the app"),
])
def test_the_alert_check_fails_when_the_app_changes_its_line(
        infra: Infra, prefix: str, fields: tuple[str, ...], kinds: tuple[str, ...]) -> None:
    assert alert_problems(infra, prefix, fields, kinds) != []


# --- Each rule fails on the defect it exists for ---------------------------------------------

# (rule, file under infra/, regex, replacement): the defect put back into a copy of infra/.
DEFECTS = [
    ("decorators", "app/keyvault-secrets.bicep", r"param twilioAuthToken string", "param twilioAuthToken array"),
    ("decorators", MAIN, r"@allowed\(\['User', 'ServicePrincipal', 'Group'\]\)\nparam principalType string = 'User'",
     "@allowed(['User', 'ServicePrincipal'])\nparam principalType string = 'Users'"),
    ("module wiring", MAIN, r"    userPrincipalType: principalType\n", "    userPrincipalKind: principalType\n"),
    ("module wiring", MAIN, r"monitoring\.outputs\.applicationInsightsId", "monitoring.outputs.appInsightsId"),
    ("flex", "app/api.bicep", r"      http20Enabled: true\n", "      http20Enabled: true\n      ftpsState: 'Disabled'\n"),
    ("flex", "app/api.bicep", r"      http20Enabled: true\n", "      http20Enabled: true\n      alwaysOn: false\n"),
    ("flex", "app/api.bicep", r"    KEY_VAULT_URL: keyVaultUri\n",
     "    KEY_VAULT_URL: keyVaultUri\n    FUNCTIONS_WORKER_RUNTIME: 'python'\n"),
    ("flex", "app/api.bicep", r"    httpsOnly: true\n", "    httpsOnly: true\n    containerSize: 1536\n"),
    ("flex", "app/api.bicep", r"    KEY_VAULT_URL: keyVaultUri\n",
     "    KEY_VAULT_URL: keyVaultUri\n    FUNCTIONS_WORKER_PROCESS_COUNT: '2'\n"),
    ("location", MAIN, r"@allowed\(\[\n  'australiaeast'[^\]]*\]\)\n", ""),
    ("location", "app/identity.bicep", r"  location: location\n", "  location: 'eastus'\n"),
    ("storage sku", "app/storage.bicep", r"sku: \{ name: sku \}", "sku: { name: 'Standard_GZRS' }"),
    ("storage sku", MAIN, r"param storageSku string = 'Standard_LRS'", "param storageSku string = 'Standard_GZRS'"),
    ("principal type", "app/rbac.bicep", r"(principalId: userPrincipalId\n    principalType: )userPrincipalType",
     r"\1'User'"),
    ("principal type", "main.parameters.json", r'"principalType": \{ "value": "[^"]*" \},\n', ""),
    ("ordering", MAIN, r"  dependsOn: \[rbac\]\n", ""),
    ("re-provision", MAIN, r"uniqueString\(resourceToken, identity\.outputs\.principalId\)", "resourceToken"),
    ("re-provision", "app/keyvault.bicep", r"enablePurgeProtection: true", "enablePurgeProtection: false"),
    ("alert", ALERTS, r'" twilio_code=" twilio_code', '" code=" twilio_code'),
    ("alert", ALERTS, r'" reason=" reason;', ";"),
    ("alert", ALERTS, r"throttled \(from the app\)", "(from the app)"),
    ("alert", ALERTS, r"threshold: 0", "threshold: 5"),
    ("alert", ALERTS, r"    enabled: true\n    scopes", "    enabled: false\n    scopes"),
    ("alert", ALERTS, r"\* \"Moving message to queue '\"", "* \"Moved message to '\""),
    ("alert", ALERTS, r"actionGroups: empty\(alertEmail\) \? \[\] : \[actionGroup\.id\]", "actionGroups: []"),
]


@pytest.mark.parametrize(("rule", "rel", "pattern", "repl"), DEFECTS,
                         ids=[f"{d[0]}: {d[1]} {i}" for i, d in enumerate(DEFECTS)])
def test_rule_reports_its_defect(tmp_path: Path, rule: str, rel: str, pattern: str, repl: str) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    text, count = re.subn(pattern, repl, (copy / rel).read_text(), count=1)
    assert count == 1, f"the defect no longer applies to {rel}: update DEFECTS"
    (copy / rel).write_text(text)
    assert INFRA_RULES[rule](Infra(copy)) != []


def test_readme_check_reports_drift(infra: Infra) -> None:
    readme = (ROOT / "docs" / "deploy.md").read_text()
    section = readme_alert_section(readme)
    assert readme_problems(infra, readme.replace(section, section.replace(" job_key=", " key="))) != []
    assert readme_problems(infra, readme.replace(section, section.replace("| `no_sender` |", "| `nosender` |"))) != []


def test_sampling_check_reports_sampled_traces() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"] = "Request"
    assert sampling_problems(host) != []
