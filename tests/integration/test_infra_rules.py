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
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import deadletters
from tests.integration.bicep import INFRA, PROJECT_FILES, ROOT, Infra, decorator

MAIN = "main.bicep"
ALERTS = "app/alerts.bicep"
API = "app/api.bicep"
RBAC = "app/rbac.bicep"

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
# Azure-Samples/functions-quickstart-python-http-azd infra/main.bicep (commit fe29236), less its
# canary region: eastus2euap is an EUAP (Early Updates Access Program) region, which ordinary
# subscriptions cannot deploy to. Microsoft's live list: `az functionapp
# list-flexconsumption-locations` (flex-consumption-how-to, "View currently supported regions").
OFFICIAL_QUICKSTART_REGIONS = (
    "australiaeast", "australiasoutheast", "brazilsouth", "canadacentral", "centralindia",
    "centralus", "eastasia", "eastus", "eastus2", "eastus2euap", "francecentral",
    "germanywestcentral", "italynorth", "japaneast", "koreacentral", "northcentralus",
    "northeurope", "norwayeast", "southafricanorth", "southcentralus", "southeastasia",
    "southindia", "spaincentral", "swedencentral", "uaenorth", "uksouth", "ukwest",
    "westcentralus", "westeurope", "westus", "westus2", "westus3",
)
CANARY_REGION = re.compile(r"euap$")
FLEX_REGIONS = tuple(r for r in OFFICIAL_QUICKSTART_REGIONS if not CANARY_REGION.search(r))

# Flex instance sizes the API version used here accepts: 2048 and 4096 MB (flex-consumption-plan,
# "Instance sizes"; 512 is reported refused with Microsoft.Web 2024-04-01,
# Azure/azure-rest-api-specs#40898). 2048 is Microsoft's default.
FLEX_MEMORY_MB = (2048, 4096)

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


def memory_problems(infra: Infra) -> list[str]:
    """instanceMemoryMB takes only the sizes Flex accepts, defaults to 2048, and is what the
    site uses."""
    problems = []
    for rel in infra.files:
        param = infra.params(rel).get("instanceMemoryMB")
        if param is None:
            continue
        allowed = decorator(param, "allowed")
        if not allowed or not set(allowed) <= set(FLEX_MEMORY_MB):
            problems.append(f"{rel}: instanceMemoryMB must be @allowed({list(FLEX_MEMORY_MB)}), is {allowed}")
        if param.get("default") not in (None, FLEX_MEMORY_MB[0]):
            problems.append(f"{rel}: instanceMemoryMB must default to {FLEX_MEMORY_MB[0]}")
    for rel in infra.files:
        for name, site in infra.resources(rel, "Microsoft.Web/sites").items():
            scale = ((site.get("properties") or {}).get("functionAppConfig") or {}).get(
                "scaleAndConcurrency") or {}
            if scale.get("instanceMemoryMB") != "instanceMemoryMB":
                problems.append(f"{rel}: {name}: scaleAndConcurrency.instanceMemoryMB must be the parameter")
    return problems


# --- Deploys in every region it offers -------------------------------------------------------

def location_problems(infra: Infra) -> list[str]:
    """`location` offers exactly the Flex regions, and every resource takes it from there."""
    problems = []
    allowed = decorator(infra.params(MAIN).get("location", {}), "allowed")
    canary = [r for r in allowed or [] if CANARY_REGION.search(r)]
    if canary:
        problems.append(f"{MAIN}: location offers canary (EUAP) regions {canary}: a deployment there fails")
    if allowed is None or tuple(allowed) != FLEX_REGIONS:
        problems.append(f"{MAIN}: location must be @allowed to the Flex regions {FLEX_REGIONS}, is {allowed}")
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
    the deploying principal's type is a parameter azd fills from its login; a producer's is left
    out (a user, a group or a managed identity: ARM looks an existing principal up itself, and a
    wrong type fails with UnmatchedPrincipalType)."""
    problems = []
    for rel in infra.files:
        params = infra.params(rel)
        for name, res in infra.resources(rel, "Microsoft.Authorization/roleAssignments").items():
            props = res["properties"]
            if props["principalId"] == "appPrincipalId":
                if props.get("principalType") != "ServicePrincipal":
                    problems.append(f"{rel}: {name}: the app identity is a ServicePrincipal")
            elif props["principalId"] == PRODUCER_ITEM:
                if "principalType" in props:
                    problems.append(f"{rel}: {name}: a producer's principalType must be left out")
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
    if (infra.azd_variable("principalType") or ("",))[0] != "AZURE_PRINCIPAL_TYPE":
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


# --- Producers: the outbound queue only ------------------------------------------------------

# "Storage Queue Data Message Sender": add messages to a queue, nothing else (Microsoft's built-in
# roles reference, Storage).
QUEUE_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
PRODUCER_ITEM = "producerId"  # the loop item in app/rbac.bicep


def producer_problems(infra: Infra) -> list[str]:
    """producerPrincipalIds (azd: PRODUCER_PRINCIPAL_IDS) grants each id Storage Queue Data
    Message Sender on the outbound queue itself, not on the account."""
    problems = []
    parsed = infra.parse(RBAC)
    roles = parsed["variables"]["roles"]["value"]
    mine = {n: r for n, r in (parsed.get("resources") or {}).items()
            if r["type"] == "Microsoft.Authorization/roleAssignments"
            and infra.resources(RBAC)[n]["properties"].get("principalId") == PRODUCER_ITEM}
    if len(mine) != 1:
        return [f"{RBAC}: one role assignment loop for the producers ({PRODUCER_ITEM}), found {sorted(mine)}"]
    [(name, res)] = mine.items()
    loop = res["config"].get("loop_type") or {}
    array = (loop.get("detail") or {}).get("array_name")
    value = json.dumps(parsed["variables"].get(array, {}).get("value")) if isinstance(array, str) else ""
    if not all(s in value for s in ('"producerPrincipalIds"', '"type": "split"', '"delimiter": ","',
                                    '"type": "filter"', '"type": "empty"')):
        problems.append(f"{RBAC}: {name} must loop over producerPrincipalIds split at commas, empty items dropped")
    config = infra.resources(RBAC)[name]
    role = json.dumps(config["properties"]["roleDefinitionId"])
    if not any(roles.get(key) == QUEUE_MESSAGE_SENDER and f'"{key}"' in role for key in roles):
        problems.append(f"{RBAC}: {name} must grant Storage Queue Data Message Sender ({QUEUE_MESSAGE_SENDER})")
    scope = parsed["resources"].get(config.get("scope"), {})
    queue = scope.get("config", {})
    parent = parsed["resources"].get(queue.get("parent"), {})
    if not (scope.get("type") == "Microsoft.Storage/storageAccounts/queueServices/queues"
            and scope.get("existing") and queue.get("name") == "outboundQueueName"
            and parent.get("config", {}).get("parent") == "storage"):
        problems.append(f"{RBAC}: {name} must be scoped to the outbound queue (queueServices/queues "
                        f"named outboundQueueName), not {config.get('scope')!r}")
    if "guid" not in json.dumps(config.get("name")) or PRODUCER_ITEM not in json.dumps(config.get("name")):
        problems.append(f"{RBAC}: {name}: name must be guid(queue, {PRODUCER_ITEM}, role)")
    passed = infra.modules(MAIN)["rbac"]["config"]["params"]
    if (passed.get("producerPrincipalIds"), passed.get("outboundQueueName")) != (
            "producerPrincipalIds", "outboundQueueName"):
        problems.append(f"{MAIN}: module rbac must get producerPrincipalIds and outboundQueueName")
    if infra.params(MAIN).get("producerPrincipalIds", {}).get("default") != "":
        problems.append(f"{MAIN}: producerPrincipalIds must be a string defaulting to '' (no producer)")
    if (infra.azd_variable("producerPrincipalIds") or ("",))[0] != "PRODUCER_PRINCIPAL_IDS":
        problems.append("main.parameters.json: producerPrincipalIds must come from PRODUCER_PRINCIPAL_IDS")
    return problems


# --- Secrets: written once, never by a provision ---------------------------------------------

TWILIO_SECRET_VARIABLES = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")


def secret_problems(infra: Infra) -> list[str]:
    """No Bicep writes a secret (a deployment writes a new version on every provision, undoing a
    rotation), no Twilio secret is a deployment parameter (azd would keep it in .env), and the
    postprovision hook, which writes each secret only while it is absent, uses the names the
    app reads."""
    from infra.hooks import seed

    problems = [f"{rel}: {name} writes a Key Vault secret on every provision"
                for rel in infra.files
                for name in infra.resources(rel, "Microsoft.KeyVault/vaults/secrets")]
    for param, value in infra.mapping().items():
        if any(v in json.dumps(value) for v in TWILIO_SECRET_VARIABLES):
            problems.append(f"main.parameters.json: {param} passes a Twilio secret to the deployment")
    variables = infra.parse(MAIN)["variables"]
    names = (variables.get("accountSidSecretName", {}).get("value"),
             variables.get("authTokenSecretName", {}).get("value"))
    if names != tuple(name for _, name in seed.SECRETS):
        problems.append(f"{MAIN}: secret names {names} differ from infra/hooks/seed.py {seed.SECRETS}")
    hook = ((infra.azure_yaml().get("hooks") or {}).get("postprovision") or {}).get("posix") or {}
    if hook.get("run") != "infra/hooks/run postprovision":
        problems.append("azure.yaml: hooks.postprovision must run `infra/hooks/run postprovision`")
    return problems


# --- Sizing from azd (issue 18) --------------------------------------------------------------

# azd variable -> (main.bicep and app/api.bicep parameter, where app/api.bicep puts it, the range
# it must keep). Ranges: maximumInstanceCount 1-1000 (flex-consumption-plan, Considerations: "The
# lowest maximum scale is currently 1. The highest currently supported value is 1000");
# queue batchSize 1-32 (host.json reference, queues); newBatchThreshold >= 0, and kept to what
# 32 + 32 in flight per instance allow; perInstanceConcurrency and alwaysReady at most 1000
# (they cannot exceed the instances); the app settings as shared/settings.py checks them.
SIZING: dict[str, tuple[str, str, tuple[int, int]]] = {
    "MAXIMUM_INSTANCE_COUNT": ("maximumInstanceCount", "scaleAndConcurrency.maximumInstanceCount", (1, 1000)),
    "INSTANCE_MEMORY_MB": ("instanceMemoryMB", "scaleAndConcurrency.instanceMemoryMB", (2048, 4096)),
    "QUEUE_BATCH_SIZE": ("queueBatchSize", "appSettings.AzureFunctionsJobHost__extensions__queues__batchSize", (1, 32)),
    "QUEUE_NEW_BATCH_THRESHOLD": ("queueNewBatchThreshold",
                                  "appSettings.AzureFunctionsJobHost__extensions__queues__newBatchThreshold", (0, 32)),
    "TWILIO_MAX_CONCURRENCY": ("twilioMaxConcurrency", "appSettings.TWILIO_MAX_CONCURRENCY", (1, 100)),
    "HTTP_PER_INSTANCE_CONCURRENCY": ("httpPerInstanceConcurrency",
                                      "scaleAndConcurrency.triggers.http.perInstanceConcurrency", (1, 1000)),
    "ALWAYS_READY_INSTANCES": ("alwaysReadyInstances", "scaleAndConcurrency.alwaysReady", (0, 1000)),
    "THROTTLE_DEADLINE_SECONDS": ("throttleDeadlineSeconds", "appSettings.THROTTLE_DEADLINE_SECONDS", (60, 604800)),
    "JOB_RETENTION_DAYS": ("jobRetentionDays", "appSettings.JOB_RETENTION_DAYS", (1, 3650)),
    "WEBHOOK_EFFECT_RETENTION_HOURS": ("webhookEffectRetentionHours",
                                       "appSettings.WEBHOOK_EFFECT_RETENTION_HOURS", (1, 8760)),
}
# Concurrent REST requests a Twilio account commonly allows (more answer 429 / 20429).
TWILIO_ACCOUNT_CONCURRENCY = 100


def _placed(infra: Infra, where: str) -> Any:
    """The value app/api.bicep gives `where` ("appSettings.NAME" or "scaleAndConcurrency...")."""
    head, *path = where.split(".")
    if head == "appSettings":
        node: Any = infra.resources(API)["appSettings"]["properties"]
    else:
        node = infra.resources(API, "Microsoft.Web/sites")["site"]["properties"]["functionAppConfig"]
        path = [head, *path]
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _range(param: dict[str, Any]) -> tuple[Any, Any]:
    allowed = decorator(param, "allowed")
    if allowed:
        return min(allowed), max(allowed)
    return decorator(param, "min_value"), decorator(param, "max_value")


def sizing_problems(infra: Infra) -> list[str]:
    """Each sizing variable reaches the app: azd env -> main.parameters.json -> main.bicep ->
    module api -> app setting or functionAppConfig, with the range Flex, the host or the app
    accepts and the same default everywhere; the defaults stay under a default Twilio account."""
    problems = []
    main, api = infra.params(MAIN), infra.params(API)
    passed = infra.modules(MAIN)["api"]["config"]["params"]
    for variable, (param, where, accepted) in SIZING.items():
        mapped = infra.azd_variable(param)
        if mapped is None or mapped[0] != variable:
            problems.append(f"main.parameters.json: {param} must come from ${{{variable}:=...}}, is {mapped}")
        elif str(main.get(param, {}).get("default")) != mapped[1]:
            problems.append(f"main.parameters.json: {variable}'s default {mapped[1]!r} differs from "
                            f"{MAIN}'s {main.get(param, {}).get('default')!r}")
        for rel, params in ((MAIN, main), (API, api)):
            if param not in params:
                problems.append(f"{rel}: no parameter {param}")
            elif _range(params[param]) != accepted:
                problems.append(f"{rel}: {param} must accept {accepted[0]} to {accepted[1]}, accepts "
                                f"{_range(params[param])}")
        if passed.get(param) != param:
            problems.append(f"{MAIN}: module api must get {param}: {param}")
        if not re.search(rf"\b{param}\b", json.dumps(_placed(infra, where))):
            problems.append(f"{API}: {where} must be set from {param}")
    default = {p: main.get(p, {}).get("default") for p, _, _ in SIZING.values()}
    if not all(isinstance(v, int) for v in default.values()):
        return problems + [f"{MAIN}: every sizing parameter needs an int default"]
    if default["maximumInstanceCount"] * default["twilioMaxConcurrency"] >= TWILIO_ACCOUNT_CONCURRENCY:
        problems.append(f"{MAIN}: default maximumInstanceCount x twilioMaxConcurrency must stay under "
                        f"{TWILIO_ACCOUNT_CONCURRENCY}, a Twilio account's usual concurrency limit")
    if default["alwaysReadyInstances"] > default["maximumInstanceCount"]:
        problems.append(f"{MAIN}: alwaysReadyInstances must not exceed maximumInstanceCount")
    ready = json.dumps(_placed(infra, "scaleAndConcurrency.alwaysReady"))
    if '"http"' not in ready or '"false_value": []' not in ready:
        problems.append(f"{API}: alwaysReady must name the http group, and be empty when the count is 0")
    return problems


# --- azd itself ------------------------------------------------------------------------------

# azd sets AZURE_PRINCIPAL_TYPE from 1.17.1 on; older versions leave it unset, and a pipeline
# logged in as a service principal then fails with UnmatchedPrincipalType.
AZD_MINIMUM = (1, 17, 1)
HOOKS = ("postprovision", "postdeploy")


def azd_problems(infra: Infra) -> list[str]:
    """azure.yaml requires an azd that fills AZURE_PRINCIPAL_TYPE, and runs the hooks."""
    problems = []
    doc = infra.azure_yaml()
    required = str((doc.get("requiredVersions") or {}).get("azd", ""))
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", required.strip())
    if not m or tuple(int(x) for x in m.groups()) < AZD_MINIMUM:
        problems.append(f"azure.yaml: requiredVersions.azd must be \">= {'.'.join(map(str, AZD_MINIMUM))}\" "
                        f"or later, is {required!r}")
    for name in HOOKS:
        hook = ((doc.get("hooks") or {}).get(name) or {}).get("posix") or {}
        if hook.get("run") != f"infra/hooks/run {name}" or hook.get("shell") != "sh":
            problems.append(f"azure.yaml: hooks.{name}.posix must run `infra/hooks/run {name}` with sh")
        if hook.get("continueOnError"):
            problems.append(f"azure.yaml: hooks.{name} must stop azd when it fails")
        # azd uses `windows:` on Windows and falls back to the hook's top level otherwise,
        # which has no `run` here: azd would fail with "run is always required".
        windows = ((doc.get("hooks") or {}).get(name) or {}).get("windows") or {}
        if "WSL" not in str(windows.get("run", "")) or windows.get("continueOnError"):
            problems.append(f"azure.yaml: hooks.{name}.windows must stop azd and say to use WSL")
    script = infra.root / "hooks" / "run"
    if not script.is_file() or not os.access(script, os.X_OK):
        problems.append("infra/hooks/run must exist and be executable")
    return problems


# --- What reaches Application Insights -------------------------------------------------------

# host.json logLevel: a category takes the level of its longest configured prefix (dotted
# segments), else "default" (Microsoft: "Configure monitoring for Azure Functions", categories).
LEVELS = ("Trace", "Debug", "Information", "Warning", "Error", "Critical", "None")
# What the alert and the operator need, at Warning: the app's lines (the worker logs them under
# Function.<name>.User: dead_letter ..., and twilio_throttle ... summaries) and the host's poison
# move (Host.Triggers.Queue). Per-invocation Information to drop: the host's Executing/Executed
# (Function.<name>) and the app's own Information lines.
# The hourly retention timer's one summary line (ledger_retention deleted=...) is Information and
# cheap: kept.
FUNCTIONS = sorted(set(re.findall(r'function_name\("(\w+)"\)', "".join(
    f.read_text() for f in (ROOT / "triggers").glob("*.py")))))
HOURLY = ("retention",)
LOG_KEPT = (*(f"Function.{f}.User" for f in FUNCTIONS), "Host.Triggers.Queue")
LOG_KEPT_INFORMATION = tuple(f"Function.{f}.User" for f in HOURLY)
LOG_DROPPED = (*(f"Function.{f}" for f in FUNCTIONS),
               *(f"Function.{f}.User" for f in FUNCTIONS if f not in HOURLY))


def log_level(log_levels: dict[str, str], category: str) -> str:
    parts = category.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in log_levels:
            return log_levels[".".join(parts[:n])]
    return log_levels.get("default", "Information")


def log_level_problems(infra: Infra) -> list[str]:
    levels = infra.host_json().get("logging", {}).get("logLevel", {})
    problems = [f"host.json: {c} logs at {log_level(levels, c)}: the Warning lines the alert counts are lost"
                for c in LOG_KEPT if LEVELS.index(log_level(levels, c)) > LEVELS.index("Warning")]
    problems += [f"host.json: {c} logs at {log_level(levels, c)}: every invocation's Information is kept"
                 for c in LOG_DROPPED if LEVELS.index(log_level(levels, c)) <= LEVELS.index("Information")]
    problems += [f"host.json: {c} logs at {log_level(levels, c)}: the hourly summary is lost"
                 for c in LOG_KEPT_INFORMATION
                 if LEVELS.index(log_level(levels, c)) > LEVELS.index("Information")]
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


# --- docs/deploy.md keeps up ----------------------------------------------------------------

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# The built-in roles that may create role assignments (Microsoft's built-in roles: Owner, User
# Access Administrator, Role Based Access Control Administrator).
ASSIGNING_ROLES = ("Owner", "User Access Administrator", "Role Based Access Control Administrator")
AZD_OWN = {"AZURE_ENV_NAME", "AZURE_LOCATION"}  # azd asks for these itself


def deploy_doc_problems(infra: Infra, text: str) -> list[str]:
    """docs/deploy.md states the prerequisites azure.yaml and the role assignments impose, the
    vault's recover step, every azd variable main.parameters.json reads, and the sizing table
    as the Bicep has it."""
    problems = []
    start = text.find("## Prerequisites")
    prerequisites = " ".join(text[start:text.find("\n## ", start + 1)].split())
    problems += [f"docs/deploy.md: Prerequisites must name {role}" for role in ASSIGNING_ROLES
                 if role not in prerequisites]
    required = str((infra.azure_yaml().get("requiredVersions") or {}).get("azd", ""))
    version = required.removeprefix(">=").strip()
    if not version or f"azd {version} or later" not in prerequisites:
        problems.append(f"docs/deploy.md: Prerequisites must ask for azd {version} or later (azure.yaml)")
    for needed in ("az keyvault recover --name <KEY_VAULT_NAME>", "409", "azd env set-secret TWILIO_AUTH_TOKEN",
                   "TWILIO_CONNECT_NUMBERS", "## After azd up"):
        if needed not in text:
            problems.append(f"docs/deploy.md: must show {needed!r}")
    variables = {v[0] for p in infra.mapping() if (v := infra.azd_variable(p))} - AZD_OWN
    problems += [f"docs/deploy.md: azd variable {v} is not documented" for v in sorted(variables)
                 if f"`{v}`" not in text and f" {v} " not in text]
    main = infra.params(MAIN)
    for variable, (param, _, _) in SIZING.items():
        low, high = _range(main.get(param, {}))
        accepted = f"{low}, {high}" if decorator(main.get(param, {}), "allowed") else f"{low} to {high}"
        row = f"| `{variable}` ({main.get(param, {}).get('default')}) | {accepted} |"
        if row not in text:
            problems.append(f"docs/deploy.md: the sizing table must have {row}")
    return problems


# --- The rules on infra/ ---------------------------------------------------------------------

INFRA_RULES: dict[str, Callable[[Infra], list[str]]] = {
    "decorators": decorator_problems,
    "module wiring": module_wiring_problems,
    "flex": flex_problems,
    "instance memory": memory_problems,
    "location": location_problems,
    "storage sku": storage_sku_problems,
    "principal type": principal_type_problems,
    "re-provision": reprovision_problems,
    "ordering": ordering_problems,
    "producers": producer_problems,
    "secrets": secret_problems,
    "sizing": sizing_problems,
    "azd": azd_problems,
    "log levels": log_level_problems,
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
    ("decorators", "app/keyvault.bicep", r"param tags object", "@secure()\nparam tags array"),
    ("decorators", MAIN, r"@minValue\(1\)\n@maxValue\(32\)\nparam queueBatchSize",
     "@minLength(1)\n@maxValue(32)\nparam queueBatchSize"),
    ("decorators", MAIN, r"@allowed\(\['User', 'ServicePrincipal', 'Group'\]\)\nparam principalType string = 'User'",
     "@allowed(['User', 'ServicePrincipal'])\nparam principalType string = 'Users'"),
    ("module wiring", MAIN, r"    userPrincipalType: principalType\n", "    userPrincipalKind: principalType\n"),
    ("module wiring", MAIN, r"monitoring\.outputs\.applicationInsightsId", "monitoring.outputs.appInsightsId"),
    ("module wiring", MAIN, r"    jobRetentionDays: jobRetentionDays\n", ""),
    ("flex", API, r"      http20Enabled: true\n", "      http20Enabled: true\n      ftpsState: 'Disabled'\n"),
    ("flex", API, r"      http20Enabled: true\n", "      http20Enabled: true\n      alwaysOn: false\n"),
    ("flex", API, r"    KEY_VAULT_URL: keyVaultUri\n",
     "    KEY_VAULT_URL: keyVaultUri\n    FUNCTIONS_WORKER_RUNTIME: 'python'\n"),
    ("flex", API, r"    httpsOnly: true\n", "    httpsOnly: true\n    containerSize: 1536\n"),
    ("flex", API, r"    KEY_VAULT_URL: keyVaultUri\n",
     "    KEY_VAULT_URL: keyVaultUri\n    FUNCTIONS_WORKER_PROCESS_COUNT: '2'\n"),
    ("instance memory", MAIN, r"@allowed\(\[2048, 4096\]\)\nparam instanceMemoryMB",
     "@allowed([512, 2048, 4096])\nparam instanceMemoryMB"),
    ("instance memory", API, r"@allowed\(\[2048, 4096\]\)\nparam instanceMemoryMB",
     "@allowed([512, 2048, 4096])\nparam instanceMemoryMB"),
    ("instance memory", API, r"instanceMemoryMB: instanceMemoryMB", "instanceMemoryMB: 2048"),
    ("location", MAIN, r"@allowed\(\[\n  'australiaeast'[^\]]*\]\)\n", ""),
    ("location", MAIN, r"  'eastus2'\n", "  'eastus2'\n  'eastus2euap'\n"),
    ("location", "app/identity.bicep", r"  location: location\n", "  location: 'eastus'\n"),
    ("storage sku", "app/storage.bicep", r"sku: \{ name: sku \}", "sku: { name: 'Standard_GZRS' }"),
    ("storage sku", MAIN, r"param storageSku string = 'Standard_LRS'", "param storageSku string = 'Standard_GZRS'"),
    ("principal type", RBAC, r"(principalId: userPrincipalId\n    principalType: )userPrincipalType",
     r"\1'User'"),
    ("principal type", RBAC, r"    principalId: producerId\n",
     "    principalId: producerId\n    principalType: 'ServicePrincipal'\n"),
    ("principal type", "main.parameters.json", r'"principalType": \{ "value": "[^"]*" \},\n', ""),
    ("ordering", MAIN, r"  dependsOn: \[rbac\]\n", ""),
    ("re-provision", MAIN, r"uniqueString\(resourceToken, identity\.outputs\.principalId\)", "resourceToken"),
    ("re-provision", "app/keyvault.bicep", r"enablePurgeProtection: true", "enablePurgeProtection: false"),
    ("producers", RBAC, r"  scope: outboundQueue\n", "  scope: storage\n"),
    ("producers", RBAC, r"roleDefinitions', roles\.storageQueueDataMessageSender\)",
     "roleDefinitions', roles.storageQueueDataContributor)"),
    ("producers", RBAC, r", id => !empty\(id\)\)", ", id => true)"),
    ("producers", "main.parameters.json", r'    "producerPrincipalIds": \{ "value": "[^"]*" \},\n', ""),
    ("secrets", "app/keyvault.bicep", r"\noutput name",
     "\nresource token 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {\n  parent: vault\n"
     "  name: 'twilio-auth-token'\n  properties: { value: 'x' }\n}\n\noutput name"),
    ("secrets", "main.parameters.json", r'    "alertEmail"',
     '    "twilioAuthToken": { "value": "${TWILIO_AUTH_TOKEN=}" },\n    "alertEmail"'),
    ("secrets", MAIN, r"var authTokenSecretName = 'twilio-auth-token'", "var authTokenSecretName = 'twilio-token'"),
    ("secrets", "../azure.yaml", r"run: infra/hooks/run postprovision", "run: echo skipped"),
    ("sizing", "main.parameters.json", r'    "queueBatchSize": \{ "value": "[^"]*" \},\n', ""),
    ("sizing", "main.parameters.json", r"MAXIMUM_INSTANCE_COUNT:=10", "MAXIMUM_INSTANCE_COUNT:=40"),
    ("sizing", MAIN, r"param maximumInstanceCount int = 10", "param maximumInstanceCount int = 40"),
    ("sizing", MAIN, r"@minValue\(1\)\n@maxValue\(1000\)\nparam maximumInstanceCount",
     "@minValue(40)\n@maxValue(1000)\nparam maximumInstanceCount"),
    ("sizing", MAIN, r"@maxValue\(32\)\nparam queueBatchSize", "@maxValue(64)\nparam queueBatchSize"),
    ("sizing", API, r"    AzureFunctionsJobHost__extensions__queues__batchSize: string\(queueBatchSize\)\n", ""),
    ("sizing", API, r"perInstanceConcurrency: httpPerInstanceConcurrency", "perInstanceConcurrency: 16"),
    ("sizing", API, r"\[\{ name: 'http', instanceCount: alwaysReadyInstances \}\] : \[\]",
     "[{ name: 'http', instanceCount: alwaysReadyInstances }] : [{ name: 'http', instanceCount: 1 }]"),
    ("azd", "../azure.yaml", r'requiredVersions:\n  azd: "[^"]*"\n', ""),
    ("azd", "../azure.yaml", r'azd: ">= 1\.17\.1"', 'azd: ">= 1.10.0"'),
    ("azd", "../azure.yaml", r"  postdeploy:\n(    .*\n)+", ""),
    ("azd", "../azure.yaml", r"    windows:\n(      .*\n)+", ""),
    ("log levels", "../host.json", r'"Function": "Warning"', '"Function": "Information"'),
    ("log levels", "../host.json", r'"Function": "Warning"', '"Function": "Error"'),
    ("log levels", "../host.json", r'"Host\.Triggers\.Queue": "Warning"', '"Host.Triggers.Queue": "Error"'),
    ("log levels", "../host.json", r',\n      "Function\.retention\.User": "Information"', ""),
    ("log levels", "../host.json", r'"Function\.retention\.User": "Information"', '"Function.retention": "Information"'),
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
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, tmp_path / name)
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


def test_the_deploy_page_states_what_infra_imposes(infra: Infra) -> None:
    assert deploy_doc_problems(infra, DEPLOY_DOC.read_text()) == []


@pytest.mark.parametrize(("old", "new"), [
    ("Role Based Access Control Administrator", "an administrator"),
    ("azd 1.17.1 or later", "a recent azd"),
    ("az keyvault recover --name <KEY_VAULT_NAME>", "az keyvault show --name <KEY_VAULT_NAME>"),
    ("| `MAXIMUM_INSTANCE_COUNT` (10) | 1 to 1000 |", "| `MAXIMUM_INSTANCE_COUNT` (40) | 40 to 1000 |"),
    ("PRODUCER_PRINCIPAL_IDS", "PRODUCERS"),
], ids=["role", "azd version", "recover", "sizing", "variable"])
def test_the_deploy_page_check_reports_drift(infra: Infra, old: str, new: str) -> None:
    text = DEPLOY_DOC.read_text()
    assert old in text
    assert deploy_doc_problems(infra, text.replace(old, new)) != []
