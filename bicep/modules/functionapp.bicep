// Function App on the Flex Consumption plan (Linux only), Python, system-assigned identity.
//
// Flex Consumption rejects or ignores several classic settings and site properties:
// FUNCTIONS_WORKER_RUNTIME and the runtime version move to functionAppConfig.runtime,
// WEBSITE_CONTENTSHARE and WEBSITE_RUN_FROM_PACKAGE to functionAppConfig.deployment, the
// scale limit to functionAppConfig.scaleAndConcurrency, and FUNCTIONS_EXTENSION_VERSION is set
// by the platform. Source: "Flex Consumption plan deprecations" in the Azure Functions app
// settings reference. tests/templates checks that the template sets none of them.

@description('Azure region of the plan and the app.')
param location string

@description('Tags applied to the plan and the app.')
param tags object

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the Function App; also the first label of its default host name.')
param functionAppName string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Python version of the Functions runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string

@description('Maximum number of instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory of each instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int

@description('Always-ready instances for the durable group (orchestrator, activity and entity functions); 0 turns them off.')
@minValue(0)
@maxValue(10)
param durableAlwaysReadyInstances int

@description('App settings as an object of name: value pairs.')
param appSettings object

// Microsoft's Durable Functions guidance for Flex Consumption: one always-ready instance for
// the durable group shortens the wait for orchestrations after the app scaled to zero.
var durableAlwaysReady = [
  {
    name: 'durable'
    instanceCount: durableAlwaysReadyInstances
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux plan.
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
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
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: durableAlwaysReadyInstances > 0 ? durableAlwaysReady : []
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      // A deployment replaces the whole list: settings added by hand since the last
      // deployment are removed.
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
  }
}

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output principalId string = functionApp.identity.principalId
output defaultHostName string = functionApp.properties.defaultHostName
