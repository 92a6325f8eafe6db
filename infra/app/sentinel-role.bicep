// Grants the Function App's identity Microsoft Sentinel Contributor on one workspace.
// Deployed as a module scoped to the workspace's own resource group, which may sit in
// another resource group or subscription than the Function App.

targetScope = 'resourceGroup'

@description('Name of the Log Analytics workspace that has Microsoft Sentinel enabled.')
@minLength(4)
@maxLength(63)
param workspaceName string

@description('Object id of the Function App\'s system-assigned identity.')
param principalId string

// Microsoft Sentinel Contributor: watchlists and analytics rules, nothing outside Sentinel.
var sentinelContributorRoleId = 'ab8e14d6-4a74-4a29-9ba8-549422addade'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource sentinelContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, sentinelContributorRoleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sentinelContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output ROLE_ASSIGNMENT_ID string = sentinelContributor.id
