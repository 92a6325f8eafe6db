// ThreatFox -> Microsoft Sentinel sync: everything the Function App needs, least-privileged.
//
// Flex Consumption (FC1) Function App on Python 3.11 with a system-assigned identity.
// No key or connection string with a secret is ever written to an app setting: storage and
// Application Insights are reached by identity, and the ThreatFox Auth-Key is a Key Vault
// reference. The identity gets four roles, each on one resource:
//   Storage Blob Data Owner          on the storage account (host storage, code package, state)
//   Key Vault Secrets User           on the vault (reads the Auth-Key)
//   Monitoring Metrics Publisher     on Application Insights (Entra ID telemetry ingestion)
//   Microsoft Sentinel Contributor   on each Sentinel workspace (app/sentinel-role.bicep)
//
// Not compiled here: no Bicep compiler can be installed on our build machines. The template is
// checked by tests/test_infra.py (pycep-parser) and tools/checkov.sh (checkov).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Deployment parameters
// ---------------------------------------------------------------------------------------------

@description('Short name used in every resource name: lower-case letters, digits and hyphens, starting with a letter.')
@minLength(2)
@maxLength(12)
param appName string = 'tfsync'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {}

@description('ThreatFox Auth-Key (https://auth.abuse.ch/). Stored only as a Key Vault secret.')
@secure()
@minLength(1)
param threatFoxAuthKey string

@description('Resource id of an existing Log Analytics workspace for Application Insights; empty creates one.')
param logAnalyticsWorkspaceId string = ''

@description('Key Vault public network access. Disabled needs VNet integration and a private endpoint, which this template does not create.')
@allowed([
  'Enabled'
  'Disabled'
])
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('Highest number of instances the Flex Consumption plan may scale to. Microsoft\'s Flex samples give 40 as the platform minimum; the sync\'s blob lock keeps runs from overlapping anyway.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// ---------------------------------------------------------------------------------------------
// Product settings: one parameter per setting in shared/settings.py, with the product's default.
// Lists are arrays here and comma-joined into the app setting.
// ---------------------------------------------------------------------------------------------

@description('THREATFOX_API_URL: ThreatFox API endpoint.')
param threatFoxApiUrl string = 'https://threatfox-api.abuse.ch/api/v1/'

@description('THREATFOX_DAYS: days of IOCs to pull each run.')
@minValue(1)
@maxValue(7)
param threatFoxDays int = 1

@description('THREATFOX_TIMEOUT_SECONDS: HTTP timeout of one ThreatFox call, in seconds.')
@minValue(1)
@maxValue(600)
param threatFoxTimeoutSeconds int = 60

@description('THREATFOX_EXPORT_URL: keyed export used for reconciliation; {auth_key} is filled in at run time.')
param threatFoxExportUrl string = 'https://threatfox-api.abuse.ch/v2/files/exports/{auth_key}/full.csv.zip'

@description('THREATFOX_SYNC_SCHEDULE: NCRONTAB schedule of the timer trigger (six fields; default hourly).')
param syncSchedule string = '0 0 * * * *'

@description('SENTINEL_SUBSCRIPTION_ID: subscription of the Sentinel workspace; empty means this deployment\'s subscription.')
param sentinelSubscriptionId string = ''

@description('SENTINEL_RESOURCE_GROUP: resource group of the Sentinel workspace; empty means this resource group.')
param sentinelResourceGroup string = ''

@description('SENTINEL_WORKSPACE_NAME: Log Analytics workspace with Microsoft Sentinel enabled.')
param sentinelWorkspaceName string = ''

@description('SENTINEL_WORKSPACES: several workspace resource ids (MSSP); when set, they replace the three settings above and each gets the role.')
param sentinelWorkspaceIds array = []

@description('AZURE_ARM_ENDPOINT: Azure Resource Manager endpoint (differs in sovereign clouds).')
param armEndpoint string = 'https://management.azure.com'

@description('AZURE_AUTHORITY_HOST: Entra ID authority host (differs in sovereign clouds).')
param authorityHost string = 'https://login.microsoftonline.com'

@description('WATCHLIST_PREFIX: prefix of the watchlist aliases, e.g. ThreatFox-IP.')
@minLength(1)
@maxLength(55)
param watchlistPrefix string = 'ThreatFox'

@description('INDICATOR_KINDS: indicator kinds to sync.')
@allowed([
  'ip'
  'domain'
  'url'
  'hash'
])
param indicatorKinds array = [
  'ip'
  'domain'
  'url'
]

@description('MIN_CONFIDENCE: lowest ThreatFox confidence_level kept.')
@minValue(0)
@maxValue(100)
param minConfidence int = 50

@description('THREAT_TYPES: threat types kept (empty: all).')
@allowed([
  'botnet_cc'
  'payload_delivery'
  'payload'
  'cc_skimming'
])
param threatTypes array = []

@description('MALWARE_INCLUDE: only these malware families (Malpedia id or printable name; empty: all).')
param malwareInclude array = []

@description('MALWARE_EXCLUDE: malware families never synced.')
param malwareExclude array = []

@description('TAGS_EXCLUDE: IOCs carrying any of these tags are dropped.')
param tagsExclude array = []

@description('DROP_NON_PUBLIC_IPS: drop private, loopback, link-local, multicast and reserved addresses.')
param dropNonPublicIps bool = true

@description('ALLOWLIST: never-synced domains (with subdomains), IPs and CIDR ranges.')
param allowlist array = []

@description('USE_DEFAULT_ALLOWLIST: also apply the bundled allowlist of shared infrastructure.')
param useDefaultAllowlist bool = true

@description('ALLOWLIST_WATCHLIST: alias of an analyst-kept allowlist watchlist (empty: none).')
param allowlistWatchlist string = ''

@description('TTL_IP_DAYS: days an ip:port indicator stays listed after first seen.')
@minValue(1)
@maxValue(3650)
param ttlIpDays int = 30

@description('TTL_DOMAIN_DAYS: days a domain indicator stays listed after first seen.')
@minValue(1)
@maxValue(3650)
param ttlDomainDays int = 90

@description('TTL_URL_DAYS: days a URL indicator stays listed after first seen.')
@minValue(1)
@maxValue(3650)
param ttlUrlDays int = 90

@description('TTL_HASH_DAYS: days a hash indicator stays listed after first seen.')
@minValue(1)
@maxValue(3650)
param ttlHashDays int = 180

@description('MONTHLY_CHANGE_BUDGET: watchlist item changes the sync may spend per calendar month.')
@minValue(0)
@maxValue(100000)
param monthlyChangeBudget int = 50000

@description('RECONCILE_INTERVAL_HOURS: hours between reconciliations against the keyed export (0: never).')
@minValue(0)
@maxValue(2160)
param reconcileIntervalHours int = 24

@description('RULES_ENABLED: manage the analytics rules (false: leave rules alone).')
param rulesEnabled bool = true

@description('RULE_QUERY_FREQUENCY: how often each analytics rule runs (ISO 8601 duration).')
param ruleQueryFrequency string = 'PT1H'

@description('RULE_QUERY_PERIOD: how far back each rule run looks (ISO 8601 duration).')
param ruleQueryPeriod string = 'PT2H'

@description('STATE_CONTAINER: blob container of the state document and the lock.')
@minLength(3)
@maxLength(63)
param stateContainer string = 'threatfox-sync'

// ---------------------------------------------------------------------------------------------
// Names and role ids
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, location))
var functionAppName = 'func-${appName}-${resourceToken}'
var planName = 'plan-${appName}-${resourceToken}'
var storageAccountName = take(toLower('st${replace(appName, '-', '')}${resourceToken}'), 24)
var keyVaultName = take('kv-${appName}-${resourceToken}', 24)
var appInsightsName = 'appi-${appName}-${resourceToken}'
var logAnalyticsName = 'log-${appName}-${resourceToken}'
var deploymentContainerName = 'app-package'
var authKeySecretName = 'threatfox-auth-key'

var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

// ---------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (empty(logAnalyticsWorkspaceId)) {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: empty(logAnalyticsWorkspaceId) ? logAnalytics.id : logAnalyticsWorkspaceId
    // Only Entra ID-authenticated telemetry is accepted; the connection string alone is not enough.
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------
// Storage: host storage, the code package container and the state container
// ---------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches its storage over the public endpoint; every request needs Entra ID because shared keys are off.
  //checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35; anonymous and shared-key access are both off.
  //checkov:skip=CKV_AZURE_206:The account holds the code package and a state document the sync rebuilds; locally redundant storage is enough.
  //checkov:skip=CKV_AZURE_43:The name is computed (take of 'st' + appName + uniqueString, lower case, at most 24); checkov cannot evaluate it.
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource stateBlobContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: stateContainer
  properties: {
    publicAccess: 'None'
  }
}

// ---------------------------------------------------------------------------------------------
// Key Vault with the ThreatFox Auth-Key
// ---------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109:Key Vault references of a Function App without VNet integration arrive over the public endpoint; access is RBAC-only.
  //checkov:skip=CKV_AZURE_189:Public network access is the keyVaultPublicNetworkAccess parameter; Disabled needs VNet integration and a private endpoint.
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: keyVaultPublicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource authKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:ThreatFox Auth-Keys do not expire; an expiry date would silently stop the sync. Rotation is described in infra/README.md.
  parent: keyVault
  name: authKeySecretName
  properties: {
    value: threatFoxAuthKey
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Function App on Flex Consumption
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:Zone redundancy is not worth its always-ready instances for an hourly batch sync that catches up after an outage.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222:POST /api/sync and code publishing need the public endpoint when there is no VNet; the endpoint takes a function key over HTTPS only.
  //checkov:skip=CKV_AZURE_17:Callers authenticate with a function key, not a client certificate.
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales per execution and to zero; a fixed minimum instance count does not apply.
  //checkov:skip=CKV_AZURE_213:A timer-driven sync has no health endpoint to probe, and Flex Consumption scales to zero.
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing uses Entra ID (OneDeploy to the package container); basic auth stays off.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// ---------------------------------------------------------------------------------------------
// App settings. productSettings is the one place where each product setting gets its value;
// tests/test_infra.py checks it against shared/settings.py.
// ---------------------------------------------------------------------------------------------

var productSettings = {
  THREATFOX_API_URL: threatFoxApiUrl
  THREATFOX_DAYS: string(threatFoxDays)
  THREATFOX_TIMEOUT_SECONDS: string(threatFoxTimeoutSeconds)
  THREATFOX_EXPORT_URL: threatFoxExportUrl
  THREATFOX_SYNC_SCHEDULE: syncSchedule
  SENTINEL_SUBSCRIPTION_ID: empty(sentinelSubscriptionId) ? subscription().subscriptionId : sentinelSubscriptionId
  SENTINEL_RESOURCE_GROUP: empty(sentinelResourceGroup) ? resourceGroup().name : sentinelResourceGroup
  SENTINEL_WORKSPACE_NAME: sentinelWorkspaceName
  SENTINEL_WORKSPACES: join(sentinelWorkspaceIds, ',')
  AZURE_ARM_ENDPOINT: armEndpoint
  AZURE_AUTHORITY_HOST: authorityHost
  WATCHLIST_PREFIX: watchlistPrefix
  INDICATOR_KINDS: join(indicatorKinds, ',')
  MIN_CONFIDENCE: string(minConfidence)
  THREAT_TYPES: join(threatTypes, ',')
  MALWARE_INCLUDE: join(malwareInclude, ',')
  MALWARE_EXCLUDE: join(malwareExclude, ',')
  TAGS_EXCLUDE: join(tagsExclude, ',')
  DROP_NON_PUBLIC_IPS: dropNonPublicIps ? 'true' : 'false'
  ALLOWLIST: join(allowlist, ',')
  USE_DEFAULT_ALLOWLIST: useDefaultAllowlist ? 'true' : 'false'
  ALLOWLIST_WATCHLIST: allowlistWatchlist
  TTL_IP_DAYS: string(ttlIpDays)
  TTL_DOMAIN_DAYS: string(ttlDomainDays)
  TTL_URL_DAYS: string(ttlUrlDays)
  TTL_HASH_DAYS: string(ttlHashDays)
  MONTHLY_CHANGE_BUDGET: string(monthlyChangeBudget)
  RECONCILE_INTERVAL_HOURS: string(reconcileIntervalHours)
  RULES_ENABLED: rulesEnabled ? 'true' : 'false'
  RULE_QUERY_FREQUENCY: ruleQueryFrequency
  RULE_QUERY_PERIOD: ruleQueryPeriod
  STATE_CONTAINER: stateContainer
}

// Settings the template derives itself. Storage by identity (blob only: timer and HTTP
// triggers need no queues or tables), telemetry by identity, the Auth-Key by reference to the
// versionless secret URI so a rotated key is picked up.
var platformSettings = {
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  THREATFOX_AUTH_KEY: '@Microsoft.KeyVault(SecretUri=${authKeySecret.properties.secretUri})'
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:This is the appsettings config resource; checkov reads every sites/config as web config. Authentication is a function key.
  //checkov:skip=CKV_AZURE_63:Appsettings resource, not web config (see CKV_AZURE_13); logs go to Application Insights.
  //checkov:skip=CKV_AZURE_65:Appsettings resource, not web config (see CKV_AZURE_13).
  //checkov:skip=CKV_AZURE_66:Appsettings resource, not web config (see CKV_AZURE_13).
  //checkov:skip=CKV_AZURE_80:Appsettings resource, not web config; the app runs Python, not .NET.
  //checkov:skip=CKV_AZURE_88:Appsettings resource, not web config; Flex Consumption has no Azure Files content share.
  //checkov:skip=CKV_AZURE_222:Appsettings resource, not web config; see CKV_AZURE_222 on functionApp.
  parent: functionApp
  name: 'appsettings'
  properties: union(productSettings, platformSettings)
  // The roles must exist before the host starts reading storage and the Key Vault reference.
  dependsOn: [
    storageBlobDataOwner
    keyVaultSecretsUser
    monitoringMetricsPublisher
  ]
}

// ---------------------------------------------------------------------------------------------
// Role assignments: deterministic names, one resource each, nothing wider.
// ---------------------------------------------------------------------------------------------

resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource keyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, functionApp.id, keyVaultSecretsUserRoleId)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// One workspace from the three SENTINEL_* parameters, unless SENTINEL_WORKSPACES lists several
// (the product reads the list first, so the single workspace would get a role it never uses).
var useSingleWorkspace = empty(sentinelWorkspaceIds) && !empty(sentinelWorkspaceName)

module sentinelRole 'app/sentinel-role.bicep' = if (useSingleWorkspace) {
  name: 'sentinel-role-${resourceToken}'
  scope: resourceGroup(productSettings.SENTINEL_SUBSCRIPTION_ID, productSettings.SENTINEL_RESOURCE_GROUP)
  params: {
    workspaceName: sentinelWorkspaceName
    principalId: functionApp.identity.principalId
  }
}

// MSSP: each listed workspace id, /subscriptions/{s}/resourceGroups/{g}/providers/.../workspaces/{w}.
module sentinelRoles 'app/sentinel-role.bicep' = [for (workspaceId, index) in sentinelWorkspaceIds: {
  name: 'sentinel-role-${resourceToken}-${index}'
  scope: resourceGroup(split(workspaceId, '/')[2], split(workspaceId, '/')[4])
  params: {
    workspaceName: last(split(workspaceId, '/'))
    principalId: functionApp.identity.principalId
  }
}]

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

output FUNCTION_APP_NAME string = functionApp.name
output FUNCTION_APP_HOST_NAME string = functionApp.properties.defaultHostName
output SYNC_URL string = 'https://${functionApp.properties.defaultHostName}/api/sync'
output SYNC_KEY_COMMAND string = 'az functionapp keys list --resource-group ${resourceGroup().name} --name ${functionApp.name} --query functionKeys.default --output tsv'
output KEY_VAULT_NAME string = keyVault.name
output STORAGE_ACCOUNT_NAME string = storage.name
output APPLICATION_INSIGHTS_NAME string = appInsights.name
