// Example parameters. Copy, adjust the Sentinel workspace, and deploy with
//   read -rs THREATFOX_AUTH_KEY && export THREATFOX_AUTH_KEY
//   az deployment group create -g <rg> -p infra/main.bicepparam
// (read -rs keeps the key off the screen and out of shell history.) The Auth-Key
// is read from the environment of the deploying shell; never write it in this file.
using './main.bicep'

param appName = 'tfsync'
param threatFoxAuthKey = readEnvironmentVariable('THREATFOX_AUTH_KEY')

// The workspace with Microsoft Sentinel; subscription and resource group default to the
// deployment's own when left empty.
param sentinelSubscriptionId = ''
param sentinelResourceGroup = 'rg-sentinel'
param sentinelWorkspaceName = 'law-sentinel'

// Product settings: the values below are the product's defaults, listed here as a starting point.
param syncSchedule = '0 0 * * * *'
param threatFoxDays = 1
param indicatorKinds = [
  'ip'
  'domain'
  'url'
]
param minConfidence = 50
param watchlistPrefix = 'ThreatFox'
param ttlIpDays = 30
param ttlDomainDays = 90
param ttlUrlDays = 90
param ttlHashDays = 180
param monthlyChangeBudget = 50000
param rulesEnabled = true
param allowlist = []
