"""Structure checks of the Bicep in infra/, which no Bicep compiler checks here.

pycep-parser turns each template into a dict. It knows Bicep's grammar but not the
resource schemas, so these tests pin the keys and values that matter. In its output a
bare identifier and a string literal look alike (both are plain strings); tests that
need to tell them apart compare against the declared parameter and variable names.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
SENTINEL_MODULE = INFRA / "app" / "sentinel-role.bicep"
PARAM_FILE = INFRA / "main.bicepparam"
CHECKOV_SCRIPT = ROOT / "tools" / "checkov.sh"

STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
SENTINEL_CONTRIBUTOR = "ab8e14d6-4a74-4a29-9ba8-549422addade"

# Settings that must never reach Azure: a fixed token for the local stand-in, and the
# storage connection string (Azure uses the identity-based settings instead).
LOCAL_ONLY_SETTINGS = {"SENTINEL_STATIC_TOKEN", "AzureWebJobsStorage"}
# Settings whose value the template derives itself rather than taking a parameter.
TEMPLATE_SETTINGS = {"THREATFOX_AUTH_KEY", "AzureWebJobsStorage__blobServiceUri"}


# Parsed templates are nested dicts of unknown shape: typed Any, checked by the asserts.
@functools.cache
def _parsed(path: Path) -> Any:
    return BicepParser().parse(file_path=path)


def _main() -> Any:
    return _parsed(MAIN)


def _resource(name: str, template: Path = MAIN) -> Any:
    return _parsed(template)["resources"][name]


def _config(name: str, template: Path = MAIN) -> Any:
    return _resource(name, template)["config"]


def _variable(name: str, template: Path = MAIN) -> Any:
    return _parsed(template)["variables"][name]["value"]


def _leaves(
    node: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield (path, value) for every scalar in a parsed template."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, str(index)))
    else:
        yield path, node


def _function(node: Any) -> dict[str, Any]:
    assert isinstance(node, dict) and "function" in node, node
    function: dict[str, Any] = node["function"]
    return function


def _accessor(node: Any) -> tuple[Any, Any]:
    assert isinstance(node, dict) and "operator" in node, node
    operator = node["operator"]
    assert operator["type"] == "property_accessor"
    return operator["operands"]["operand_1"], operator["operands"]["operand_2"]


def _dotted(node: Any) -> str:
    """Render a chain of property accessors as ``a.b.c``."""
    if isinstance(node, str):
        return node
    first, second = _accessor(node)
    return f"{_dotted(first)}.{_dotted(second)}"


def _role_assignments() -> list[tuple[Path, str, dict[str, Any]]]:
    found = []
    for template in (MAIN, SENTINEL_MODULE):
        for name, resource in _parsed(template)["resources"].items():
            if resource["type"] == "Microsoft.Authorization/roleAssignments":
                found.append((template, name, resource))
    return found


def _rendered_default(default: Any) -> str:
    """The app-setting text a parameter default becomes in productSettings."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return ",".join(default)
    return str(default)


def test_templates_target_a_resource_group():
    for template in (MAIN, SENTINEL_MODULE):
        assert _parsed(template)["globals"]["scope"]["value"] == "resourceGroup"


def test_main_declares_each_resource_with_a_current_api_version():
    expected = {
        "logAnalytics": ("Microsoft.OperationalInsights/workspaces", "2023-09-01"),
        "appInsights": ("Microsoft.Insights/components", "2020-02-02"),
        "storage": ("Microsoft.Storage/storageAccounts", "2023-05-01"),
        "blobService": (
            "Microsoft.Storage/storageAccounts/blobServices",
            "2023-05-01",
        ),
        "deploymentContainer": (
            "Microsoft.Storage/storageAccounts/blobServices/containers",
            "2023-05-01",
        ),
        "stateBlobContainer": (
            "Microsoft.Storage/storageAccounts/blobServices/containers",
            "2023-05-01",
        ),
        "keyVault": ("Microsoft.KeyVault/vaults", "2023-07-01"),
        "authKeySecret": ("Microsoft.KeyVault/vaults/secrets", "2023-07-01"),
        "plan": ("Microsoft.Web/serverfarms", "2024-04-01"),
        "functionApp": ("Microsoft.Web/sites", "2024-04-01"),
        "ftpBasicAuth": (
            "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
            "2024-04-01",
        ),
        "scmBasicAuth": (
            "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
            "2024-04-01",
        ),
        "appSettings": ("Microsoft.Web/sites/config", "2024-04-01"),
        "storageBlobDataOwner": (
            "Microsoft.Authorization/roleAssignments",
            "2022-04-01",
        ),
        "keyVaultSecretsUser": (
            "Microsoft.Authorization/roleAssignments",
            "2022-04-01",
        ),
        "monitoringMetricsPublisher": (
            "Microsoft.Authorization/roleAssignments",
            "2022-04-01",
        ),
    }

    declared = {
        name: (resource["type"], resource["api_version"])
        for name, resource in _main()["resources"].items()
    }

    assert declared == expected


def test_sentinel_module_references_the_existing_workspace():
    workspace = _resource("workspace", SENTINEL_MODULE)

    assert workspace["type"] == "Microsoft.OperationalInsights/workspaces"
    assert workspace["api_version"] == "2023-09-01"
    assert workspace["existing"] is True
    assert workspace["config"]["name"] == "workspaceName"


def test_plan_is_flex_consumption_on_linux():
    plan = _config("plan")

    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True


def test_function_app_runs_python_311_on_flex_consumption_with_its_own_identity():
    app = _config("functionApp")
    properties = app["properties"]
    flex = properties["functionAppConfig"]

    assert app["kind"] == "functionapp,linux"
    assert app["identity"] == {"type": "SystemAssigned"}
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    assert flex["runtime"] == {"name": "python", "version": "3.11"}
    assert flex["deployment"]["storage"]["type"] == "blobContainer"
    assert flex["deployment"]["storage"]["authentication"] == {
        "type": "SystemAssignedIdentity"
    }
    assert flex["scaleAndConcurrency"] == {
        "maximumInstanceCount": "maximumInstanceCount",
        "instanceMemoryMB": "instanceMemoryMB",
    }
    assert _main()["parameters"]["instanceMemoryMB"]["default"] == 2048


def test_function_app_deploys_from_the_package_container():
    value = _config("functionApp")["properties"]["functionAppConfig"]["deployment"][
        "storage"
    ]["value"]

    assert (
        value == "${storage.properties.primaryEndpoints.blob}${deploymentContainerName}"
    )
    assert _config("deploymentContainer")["name"] == "deploymentContainerName"


def test_basic_publishing_credentials_are_off():
    for name, policy in (("ftpBasicAuth", "ftp"), ("scmBasicAuth", "scm")):
        config = _config(name)
        assert config["name"] == policy
        assert config["properties"] == {"allow": False}


def test_storage_account_accepts_only_entra_id_over_tls():
    storage = _config("storage")
    properties = storage["properties"]

    assert storage["kind"] == "StorageV2"
    assert storage["sku"] == {"name": "Standard_LRS"}
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True


def test_state_container_is_created_from_the_setting_parameter():
    assert _config("stateBlobContainer")["name"] == "stateContainer"
    assert _config("stateBlobContainer")["properties"] == {"publicAccess": "None"}


def test_key_vault_uses_rbac_and_cannot_be_purged():
    properties = _config("keyVault")["properties"]

    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True
    assert properties["publicNetworkAccess"] == "keyVaultPublicNetworkAccess"
    assert "accessPolicies" not in properties


def test_application_insights_is_workspace_based_and_identity_only():
    properties = _config("appInsights")["properties"]
    settings = _variable("platformSettings")

    assert properties["DisableLocalAuth"] is True
    assert "WorkspaceResourceId" in properties
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    assert (
        _dotted(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"])
        == "appInsights.properties.ConnectionString"
    )


def test_role_assignments_are_exactly_the_four_narrow_roles_on_their_resources():
    granted = set()

    for template, name, resource in _role_assignments():
        config = resource["config"]
        role_reference = _function(config["properties"]["roleDefinitionId"])
        assert role_reference["type"] == "subscription_resource_id", name
        role_variable = role_reference["parameters"]["resource_name_1"]
        granted.add((_variable(role_variable, template), config["scope"]))

    assert granted == {
        (STORAGE_BLOB_DATA_OWNER, "storage"),
        (KEY_VAULT_SECRETS_USER, "keyVault"),
        (MONITORING_METRICS_PUBLISHER, "appInsights"),
        (SENTINEL_CONTRIBUTOR, "workspace"),
    }


def test_role_assignments_go_to_the_service_principal_with_deterministic_names():
    assignments = _role_assignments()

    assert len(assignments) == 4
    for _template, name, resource in assignments:
        config = resource["config"]
        guid = _function(config["name"])
        assert guid["type"] == "guid", name
        assert _dotted(guid["parameters"]["base_string"]) == f"{config['scope']}.id"
        role_variable = _function(config["properties"]["roleDefinitionId"])[
            "parameters"
        ]["resource_name_1"]
        assert role_variable in guid["parameters"].values(), name
        assert config["properties"]["principalType"] == "ServicePrincipal", name


def test_main_grants_roles_to_the_function_app_identity():
    for name in (
        "storageBlobDataOwner",
        "keyVaultSecretsUser",
        "monitoringMetricsPublisher",
    ):
        principal = _config(name)["properties"]["principalId"]
        assert _dotted(principal) == "functionApp.identity.principalId", name


def test_sentinel_role_module_is_scoped_to_the_workspace_resource_group():
    modules = _main()["modules"]
    single = modules["sentinelRole"]["config"]
    several = modules["sentinelRoles"]["config"]

    for module in (modules["sentinelRole"], modules["sentinelRoles"]):
        assert module["detail"]["path"] == "app/sentinel-role.bicep"
    assert single["condition"] == "useSingleWorkspace"
    scope = _function(single["config"]["scope"])
    assert scope["type"] == "resource_group"
    assert (
        _dotted(scope["parameters"]["subscription_id"])
        == "productSettings.SENTINEL_SUBSCRIPTION_ID"
    )
    assert (
        _dotted(scope["parameters"]["resource_group_name"])
        == "productSettings.SENTINEL_RESOURCE_GROUP"
    )
    assert single["config"]["params"]["workspaceName"] == "sentinelWorkspaceName"
    assert several["loop_type"]["detail"]["array_name"] == "sentinelWorkspaceIds"
    assert _function(several["config"]["scope"])["type"] == "resource_group"


def test_auth_key_parameter_is_secure_and_only_feeds_the_key_vault_secret():
    parameter = _main()["parameters"]["threatFoxAuthKey"]
    uses = [path for path, value in _leaves(_main()) if value == "threatFoxAuthKey"]

    assert {"type": "secure"} in parameter["decorators"]
    assert parameter["default"] is None
    assert uses == [("resources", "authKeySecret", "config", "properties", "value")]


def test_auth_key_app_setting_is_a_key_vault_reference():
    reference = _variable("platformSettings")["THREATFOX_AUTH_KEY"]

    assert (
        reference
        == "@Microsoft.KeyVault(SecretUri=${authKeySecret.properties.secretUri})"
    )


def test_templates_hold_no_keys_or_key_lookups():
    texts = [path.read_text() for path in (MAIN, SENTINEL_MODULE, PARAM_FILE)]

    for text in texts:
        for forbidden in (
            "AccountKey=",
            "listKeys",
            "listSecrets",
            "InstrumentationKey=",
        ):
            assert forbidden not in text
        assert "SENTINEL_STATIC_TOKEN" not in text


def test_app_settings_are_the_product_and_platform_settings():
    union = _function(_config("appSettings")["properties"])

    assert union["type"] == "union"
    assert set(union["parameters"].values()) == {"productSettings", "platformSettings"}
    assert _config("appSettings")["parent"] == "functionApp"


def test_storage_is_reached_by_identity_only():
    settings = {**_variable("productSettings"), **_variable("platformSettings")}

    assert "AzureWebJobsStorage" not in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert (
        _dotted(settings["AzureWebJobsStorage__blobServiceUri"])
        == "storage.properties.primaryEndpoints.blob"
    )


def test_every_product_setting_is_passed_through():
    expected = {setting.name for setting in SETTINGS} - LOCAL_ONLY_SETTINGS

    product = set(_variable("productSettings"))
    platform = set(_variable("platformSettings"))

    assert product == expected - TEMPLATE_SETTINGS
    assert platform >= TEMPLATE_SETTINGS


def test_each_setting_parameter_defaults_to_the_product_default():
    parameters = _main()["parameters"]
    defaults = {setting.name: setting.default for setting in SETTINGS}

    for name, expression in _variable("productSettings").items():
        used = {value for _path, value in _leaves(expression) if value in parameters}
        assert len(used) == 1, (name, used)
        default = parameters[used.pop()]["default"]
        assert _rendered_default(default) == defaults[name], name


def test_example_parameter_file_names_only_declared_parameters():
    text = PARAM_FILE.read_text()
    names = re.findall(r"^param (\w+) =", text, flags=re.MULTILINE)

    assert re.search(r"^using './main.bicep'$", text, flags=re.MULTILINE)
    assert names
    assert set(names) <= set(_main()["parameters"])
    assert "param threatFoxAuthKey = readEnvironmentVariable(" in text


def test_outputs_name_the_app_and_its_sync_url():
    outputs = _main()["outputs"]

    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs)
    assert _dotted(outputs["FUNCTION_APP_NAME"]["value"]) == "functionApp.name"
    assert "FUNCTION_APP_HOST_NAME" in outputs
    assert outputs["SYNC_URL"]["value"] == (
        "https://${functionApp.properties.defaultHostName}/api/sync"
    )
    assert "az functionapp keys list" in outputs["SYNC_KEY_COMMAND"]["value"]


def test_every_checkov_skip_gives_a_reason():
    skips = []
    for path in INFRA.rglob("*.bicep"):
        skips += re.findall(r"checkov:skip=([^:\s]+):?(.*)", path.read_text())

    assert skips
    for check, reason in skips:
        assert re.fullmatch(r"CKV2?_AZURE_\d+", check), check
        assert len(reason.strip()) >= 20, check


def test_checkov_finds_no_failed_check():
    if not CHECKOV_SCRIPT.exists():  # pragma: no cover
        pytest.fail("tools/checkov.sh is missing")

    # CHECKOV_NO_INSTALL: the test never reaches a package registry; setup installs it.
    result = subprocess.run(
        [str(CHECKOV_SCRIPT)],
        env={**os.environ, "CHECKOV_NO_INSTALL": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "Failed checks: 0" in output, output
    assert "Parsing errors" not in output, output
    passed = re.search(r"Passed checks: (\d+)", output)
    assert passed and int(passed.group(1)) > 0, output
