// Storage account of the Function App: host storage and the Durable Functions task hub
// (blobs, queues, tables), the Flex Consumption deployment package, and the upload
// container that Live Response scripts write files into.

@description('Azure region of the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object

@description('Storage account name: 3 to 24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Storage redundancy SKU.')
param skuName string

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob container that Live Response scripts upload files into through a per-blob SAS.')
param uploadContainerName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    // Every client uses Entra ID: the host and Durable Functions through the
    // AzureWebJobsStorage__* identity settings (Durable extension 2.7.0 and later), the
    // upload SAS is a user delegation SAS, and Flex deployments use the app identity.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource uploadContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: uploadContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The app deletes each upload after submitting it; this rule removes what a failed or
// abandoned analysis leaves behind. Lifecycle rules run about once a day, so a blob can
// outlive the threshold by up to a day.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-uploads-after-one-day'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${uploadContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: 1
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    uploadContainer
  ]
}

output storageAccountName string = storage.name
output storageAccountId string = storage.id
output location string = storage.location

// Service endpoints end with '/', as Azure returns them; they carry the right DNS suffix in
// sovereign clouds, unlike a bare account name.
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
output uploadContainerName string = uploadContainer.name
