// ANY.RUN enrichment connector for Microsoft Sentinel: the whole Azure deployment.
//
// Deploy into a resource group with `az deployment group create` (docs/deployment.md).
// The first deployment (appCodeDeployed=false) creates the Function App and what it needs;
// after the app code is published, a second deployment with appCodeDeployed=true adds the
// Event Grid subscription and the Sentinel playbook, because both need the published
// functions. Defender for Endpoint API roles are granted by
// scripts/grant-defender-permissions.ps1, since Azure RBAC cannot grant them.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

@description('Azure region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Short prefix of the generated resource names: 3 to 9 lowercase letters and digits.')
@minLength(3)
@maxLength(9)
param baseName string = 'anyrun'

@description('Tags applied to every resource.')
param tags object = {}

@description('ANY.RUN API key (Enterprise plan), stored in Key Vault as the secret ANYRUN-APIKey. Empty leaves the stored secret unchanged, so redeployments need not pass it again.')
@secure()
param anyrunApiKey string = ''

@description('Name of the Log Analytics workspace that Microsoft Sentinel runs on.')
param sentinelWorkspaceName string

@description('Resource group of the Sentinel workspace.')
param sentinelWorkspaceResourceGroup string = resourceGroup().name

@description('Subscription id of the Sentinel workspace.')
param sentinelWorkspaceSubscriptionId string = subscription().subscriptionId

@description('Object id of the Azure Security Insights service principal (appId 98785600-1bb7-4fb9-b9fa-19afe2c8a360) in this tenant: az ad sp show --id 98785600-1bb7-4fb9-b9fa-19afe2c8a360 --query id -o tsv')
param azureSecurityInsightsObjectId string

@description('Set to true once the app code is published. Only then are the Event Grid subscription (Event Grid checks that the function exists) and the playbook with its automation rule deployed.')
param appCodeDeployed bool = false

@description('Python version of the Function App.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Maximum number of Function App instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each Function App instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready instances for the durable functions group; 0 turns them off and lets the app scale to zero (always-ready instances are billed while idle).')
@minValue(0)
@maxValue(10)
param durableAlwaysReadyInstances int = 1

@description('Redundancy SKU of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSku string = 'Standard_LRS'

@description('Blob container that receives files fetched from endpoints; blobs older than one day are deleted.')
@minLength(3)
@maxLength(63)
param uploadContainerName string = 'uploads'

@description('Days the app telemetry workspace keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Turn on Key Vault purge protection. It cannot be turned off, and a deleted vault then cannot be purged before its 90-day soft-delete retention ends.')
param keyVaultPurgeProtection bool = true

@description('ANY.RUN API root (app setting ANYRUN_BASE_URL).')
param anyrunBaseUrl string = 'https://api.any.run'

@description('Azure Resource Manager endpoint for Sentinel incidents (app setting SENTINEL_ARM_BASE_URL); the default follows the cloud of the deployment.')
param sentinelArmBaseUrl string = environment().resourceManager

@description('Token scope for ARM and the Sentinel threat intelligence upload API (app setting ARM_TOKEN_SCOPE).')
param armTokenScope string = '${environment().resourceManager}.default'

@description('Sentinel threat intelligence upload endpoint (app setting SENTINEL_TI_BASE_URL). Change it for sovereign clouds.')
param sentinelTiBaseUrl string = 'https://api.ti.sentinel.azure.com'

@description('Defender for Endpoint API endpoint (app setting DEFENDER_BASE_URL): the global one, a regional one such as https://eu.api.security.microsoft.com, or a sovereign cloud\'s.')
param defenderBaseUrl string = 'https://api.security.microsoft.com'

@description('Token scope of the Defender for Endpoint API (app setting DEFENDER_TOKEN_SCOPE). Change it for sovereign clouds.')
param defenderTokenScope string = 'https://api.securitycenter.microsoft.com/.default'

@description('Name of the playbook (Logic App) that forwards incidents to the connector.')
param playbookName string = 'ANYRUN-Forward-Incident'

@description('Create the example automation rule that runs the playbook for every new incident.')
param deployAutomationRule bool = true

@description('Enable the example automation rule; false creates it switched off.')
param automationRuleEnabled bool = true

@description('Display name of the example automation rule.')
param automationRuleName string = 'ANY.RUN: enrich new incidents'

@description('Order of the example automation rule among the workspace\'s rules, 1 to 1000.')
@minValue(1)
@maxValue(1000)
param automationRuleOrder int = 100

// ---------------------------------------------------------------------------------------
// Names and fixed values
// ---------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, baseName)
var functionAppName = 'func-${baseName}-${suffix}'
var planName = 'plan-${baseName}-${suffix}'
var storageAccountName = take(toLower('st${baseName}${suffix}'), 24)
var keyVaultName = take('kv-${baseName}-${suffix}', 24)
var logAnalyticsName = 'log-${baseName}-${suffix}'
var appInsightsName = 'appi-${baseName}-${suffix}'
var deploymentContainerName = 'app-package'

// Names the app code defines: the Event Grid trigger function for new uploads and the
// incident webhook route (`/api` is the Functions default route prefix).
var uploadEventFunctionName = 'on_upload_blob_created'
var incidentWebhookPath = 'api/incidents'

// Built-in role definition ids; they are the same in every tenant.
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a' // Storage Blob Delegator
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  sentinelResponder: '3e150937-b8fe-4cfb-8069-0eaf05ecd056' // Microsoft Sentinel Responder
  sentinelContributor: 'ab8e14d6-4a74-4a29-9ba8-549422addade' // Microsoft Sentinel Contributor
  sentinelReader: '8d289c81-5878-46d4-8554-54e1e3d8b5cb' // Microsoft Sentinel Reader
  sentinelAutomationContributor: 'f4c81013-99ee-4d62-a7ee-b3f1f648599a' // Microsoft Sentinel Automation Contributor
}

// ---------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: logAnalyticsName
    appInsightsName: appInsightsName
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    storageAccountName: storageAccountName
    skuName: storageSku
    deploymentContainerName: deploymentContainerName
    uploadContainerName: uploadContainerName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    keyVaultName: keyVaultName
    enablePurgeProtection: keyVaultPurgeProtection
    anyrunApiKey: anyrunApiKey
  }
}

// Every app setting the template sets. tests/templates checks this object against the
// settings registry (settings.SETTINGS) and the Flex Consumption rules.
var appSettings = {
  // Host storage and the Durable Functions task hub (host.json connectionStringName
  // AzureWebJobsStorage) through the system-assigned identity; no connection string.
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  ANYRUN_API_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.anyrunApiKeySecretUri})'
  ANYRUN_BASE_URL: anyrunBaseUrl
  SENTINEL_ARM_BASE_URL: sentinelArmBaseUrl
  SENTINEL_TI_BASE_URL: sentinelTiBaseUrl
  ARM_TOKEN_SCOPE: armTokenScope
  DEFENDER_BASE_URL: defenderBaseUrl
  DEFENDER_TOKEN_SCOPE: defenderTokenScope
  // File analysis is off while UPLOAD_BLOB_ENDPOINT is empty. The upload SAS is a user
  // delegation SAS of the app identity, so no account key is set.
  UPLOAD_BLOB_ENDPOINT: storage.outputs.blobEndpoint
  UPLOAD_CONTAINER: storage.outputs.uploadContainerName
  // Analysis records (reuse of earlier analyses) and sandbox slots live in a table of the
  // same account; they are off while ANALYSIS_TABLE_ENDPOINT is empty.
  ANALYSIS_TABLE_ENDPOINT: storage.outputs.tableEndpoint
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    planName: planName
    functionAppName: functionAppName
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    durableAlwaysReadyInstances: durableAlwaysReadyInstances
    appSettings: appSettings
  }
}

module appAccess 'modules/app-access.bicep' = {
  name: 'app-access'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.storageAccountName
    keyVaultName: keyVault.outputs.keyVaultName
    appInsightsName: monitoring.outputs.appInsightsName
    storageRoleIds: [
      // Host storage: the Functions host needs Blob Data Owner with an identity-based
      // AzureWebJobsStorage; it contains every action of Storage Blob Data Contributor,
      // which Durable Functions and the upload container need.
      roleIds.storageBlobDataOwner
      // User delegation key for the per-blob upload SAS.
      roleIds.storageBlobDelegator
      // Durable Functions control and work-item queues.
      roleIds.storageQueueDataContributor
      // Durable Functions history and instance tables; host diagnostic events.
      roleIds.storageTableDataContributor
    ]
    keyVaultRoleId: roleIds.keyVaultSecretsUser
    appInsightsRoleId: roleIds.monitoringMetricsPublisher
  }
}

module appWorkspaceAccess 'modules/workspace-access.bicep' = {
  name: 'app-workspace-access'
  scope: resourceGroup(sentinelWorkspaceSubscriptionId, sentinelWorkspaceResourceGroup)
  params: {
    workspaceName: sentinelWorkspaceName
    principalId: functionApp.outputs.principalId
    roleIds: [
      // Read incidents, entities and alerts; write incident comments and labels.
      roleIds.sentinelResponder
      // Upload STIX indicators through the threat intelligence upload API.
      roleIds.sentinelContributor
    ]
  }
}

module eventGrid 'modules/eventgrid.bicep' = if (appCodeDeployed) {
  name: 'eventgrid'
  params: {
    location: storage.outputs.location
    tags: tags
    storageAccountName: storage.outputs.storageAccountName
    uploadContainerName: storage.outputs.uploadContainerName
    functionAppId: functionApp.outputs.functionAppId
    functionName: uploadEventFunctionName
  }
}

module playbook 'modules/playbook.bicep' = if (appCodeDeployed) {
  name: 'playbook'
  params: {
    location: location
    tags: tags
    playbookName: playbookName
    functionAppName: functionApp.outputs.functionAppName
    webhookPath: incidentWebhookPath
    securityInsightsObjectId: azureSecurityInsightsObjectId
    automationContributorRoleId: roleIds.sentinelAutomationContributor
    workspaceName: sentinelWorkspaceName
    workspaceResourceGroup: sentinelWorkspaceResourceGroup
    workspaceSubscriptionId: sentinelWorkspaceSubscriptionId
    // The "Microsoft Sentinel incident" trigger of the azuresentinel connection.
    workspaceReaderRoleId: roleIds.sentinelReader
  }
}

module automationRule 'modules/automation-rule.bicep' = if (appCodeDeployed && deployAutomationRule) {
  name: 'automation-rule'
  scope: resourceGroup(sentinelWorkspaceSubscriptionId, sentinelWorkspaceResourceGroup)
  params: {
    workspaceName: sentinelWorkspaceName
    displayName: automationRuleName
    order: automationRuleOrder
    isEnabled: automationRuleEnabled
    playbookId: resourceId('Microsoft.Logic/workflows', playbookName)
  }
  dependsOn: [
    playbook
  ]
}

// ---------------------------------------------------------------------------------------
// Outputs (no secrets)
// ---------------------------------------------------------------------------------------

output functionAppName string = functionApp.outputs.functionAppName
output functionAppHostName string = functionApp.outputs.defaultHostName
@description('Object id of the app\'s managed identity: pass it to scripts/grant-defender-permissions.ps1 -PrincipalId.')
output functionAppPrincipalId string = functionApp.outputs.principalId
output storageAccountName string = storage.outputs.storageAccountName
output uploadContainerName string = storage.outputs.uploadContainerName
output keyVaultName string = keyVault.outputs.keyVaultName
output appInsightsName string = monitoring.outputs.appInsightsName
output playbookName string = playbookName
