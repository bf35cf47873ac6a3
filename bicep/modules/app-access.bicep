// Role assignments of the Function App's managed identity on the resources in this
// resource group: the storage account, the Key Vault and Application Insights.
// The role definition ids come from main.bicep, where each one is named.

@description('Object id of the Function App\'s managed identity.')
param principalId string

@description('Name of the storage account (host storage, task hub, upload container).')
param storageAccountName string

@description('Name of the Key Vault that holds the ANY.RUN API key.')
param keyVaultName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Role definition ids to assign on the storage account.')
param storageRoleIds array

@description('Role definition id to assign on the Key Vault.')
param keyVaultRoleId string

@description('Role definition id to assign on Application Insights.')
param appInsightsRoleId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoleIds: {
    name: guid(storage.id, principalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource keyVaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appInsightsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, appInsightsRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', appInsightsRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
