// Key Vault (Azure RBAC permission model) holding the ANY.RUN API key.

@description('Azure region of the vault.')
param location string

@description('Tags applied to the vault.')
param tags object

@description('Vault name: 3 to 24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Turn on purge protection. It cannot be turned off, and a deleted vault then cannot be purged before its soft-delete retention ends.')
param enablePurgeProtection bool

@description('ANY.RUN API key stored as the secret ANYRUN-APIKey. Empty leaves the stored secret unchanged.')
@secure()
param anyrunApiKey string

// ANY.RUN's own Sentinel playbooks read the key under this name, so the connector keeps it.
var anyrunApiKeySecretName = 'ANYRUN-APIKey'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
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
    // The Key Vault API does not accept false here, so off is sent as an absent property.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

resource anyrunApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(anyrunApiKey)) {
  parent: vault
  name: anyrunApiKeySecretName
  properties: {
    value: anyrunApiKey
    contentType: 'ANY.RUN API key'
  }
}

output keyVaultName string = vault.name

// No version in the URI: the Key Vault reference follows the latest version, so a rotated
// key reaches the app without a redeployment.
output anyrunApiKeySecretUri string = '${vault.properties.vaultUri}secrets/${anyrunApiKeySecretName}'
