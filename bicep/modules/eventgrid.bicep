// Event Grid system topic on the storage account and the subscription that delivers
// Microsoft.Storage.BlobCreated events of the upload container to the app's Event Grid
// trigger function.
//
// Event Grid checks that the destination function exists when the subscription is created,
// so main.bicep deploys this module only after the app code is published (appCodeDeployed).

@description('Azure region of the storage account; a system topic must be in the same region as its source.')
param location string

@description('Tags applied to the system topic.')
param tags object

@description('Name of the storage account that raises the events.')
param storageAccountName string

@description('Container whose new blobs are delivered to the function.')
param uploadContainerName string

@description('Resource id of the Function App.')
param functionAppId string

@description('Name of the Event Grid trigger function in the app.')
param functionName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${storageAccountName}'
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource uploadSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'upload-blob-created'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${uploadContainerName}/blobs/'
    }
    // An upload waits for this event until its deadline, so retry for the whole day that the
    // lifecycle rule keeps the blob.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output systemTopicName string = systemTopic.name
output eventSubscriptionName string = uploadSubscription.name
