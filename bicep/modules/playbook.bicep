// Sentinel playbook: a Consumption Logic App with the "Microsoft Sentinel incident" trigger
// that posts the trigger body to the connector's webhook.
//
// How the playbook authenticates:
// - to Sentinel, through an azuresentinel API connection that uses the Logic App's managed
//   identity (the identity needs Microsoft Sentinel Reader on the workspace for the trigger);
// - to the webhook, with the app's default host key, read here with listKeys at deployment
//   time so that it never appears as a template parameter or output. The workflow receives
//   it as a SecureString parameter, and the HTTP action marks its inputs and outputs as
//   secure data, which keeps the key and the status URLs of the response out of run history.
//
// Entra ID authentication of the webhook (App Service authentication accepting the Logic
// App's identity) is not set up: it needs an app registration, which this template does not
// create, and the webhook's function-level authorization would still require a key.

@description('Azure region of the Logic App and its API connection.')
param location string

@description('Tags applied to the Logic App and its API connection.')
param tags object

@description('Name of the Logic App.')
param playbookName string

@description('Name of the Function App that serves the webhook.')
param functionAppName string

@description('Path of the incident webhook below the app\'s host name, without a leading slash.')
param webhookPath string

@description('Object id of the Azure Security Insights service principal in this tenant.')
param securityInsightsObjectId string

@description('Role definition id that lets automation rules run playbooks in this resource group.')
param automationContributorRoleId string

@description('Name of the Log Analytics workspace that Microsoft Sentinel runs on.')
param workspaceName string

@description('Resource group of the Sentinel workspace.')
param workspaceResourceGroup string

@description('Subscription id of the Sentinel workspace.')
param workspaceSubscriptionId string

@description('Role definition id the Logic App\'s identity needs on the workspace for the incident trigger.')
param workspaceReaderRoleId string

var sentinelApiId = subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'azuresentinel')
var connectionName = 'azuresentinel-${playbookName}'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource sentinelConnection 'Microsoft.Web/connections@2016-06-01' = {
  name: connectionName
  location: location
  tags: tags
  kind: 'V1'
  properties: {
    displayName: connectionName
    customParameterValues: {}
    // Managed identity authentication: the connection stores no credential.
    parameterValueType: 'Alternative'
    api: {
      id: sentinelApiId
    }
  }
}

resource playbook 'Microsoft.Logic/workflows@2019-05-01' = {
  name: playbookName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: {
        '$connections': {
          type: 'Object'
          defaultValue: {}
        }
        webhookUrl: {
          type: 'String'
        }
        functionKey: {
          type: 'SecureString'
        }
      }
      triggers: {
        Microsoft_Sentinel_incident: {
          type: 'ApiConnectionWebhook'
          inputs: {
            host: {
              connection: {
                name: '@parameters(\'$connections\')[\'azuresentinel\'][\'connectionId\']'
              }
            }
            body: {
              callback_url: '@{listCallbackUrl()}'
            }
            path: '/incident-creation'
          }
        }
      }
      actions: {
        Post_incident_to_connector: {
          type: 'Http'
          runAfter: {}
          inputs: {
            method: 'POST'
            uri: '@parameters(\'webhookUrl\')'
            headers: {
              'Content-Type': 'application/json'
              'x-functions-key': '@parameters(\'functionKey\')'
            }
            body: '@triggerBody()'
            retryPolicy: {
              type: 'exponential'
              count: 4
              interval: 'PT15S'
            }
          }
          // The webhook answers 202 with a status URL in Location. Without this option the
          // action would poll that URL until the enrichment finished.
          operationOptions: 'DisableAsyncPattern'
          runtimeConfiguration: {
            secureData: {
              properties: [
                'inputs'
                'outputs'
              ]
            }
          }
        }
      }
      outputs: {}
    }
    parameters: {
      '$connections': {
        value: {
          azuresentinel: {
            connectionId: sentinelConnection.id
            connectionName: sentinelConnection.name
            id: sentinelApiId
            connectionProperties: {
              authentication: {
                type: 'ManagedServiceIdentity'
              }
            }
          }
        }
      }
      webhookUrl: {
        value: 'https://${functionApp.properties.defaultHostName}/${webhookPath}'
      }
      functionKey: {
        // NOTE: read at deployment time, so a regenerated host key reaches the playbook only
        // with the next deployment of this template.
        value: listKeys('${functionApp.id}/host/default', '2024-04-01').functionKeys.default
      }
    }
  }
}

// Automation rules run a playbook as the Azure Security Insights service principal, which
// needs this role on the playbook's resource group.
resource automationContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, securityInsightsObjectId, automationContributorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', automationContributorRoleId)
    principalId: securityInsightsObjectId
    principalType: 'ServicePrincipal'
  }
}

module workspaceAccess 'workspace-access.bicep' = {
  name: 'playbook-workspace-access'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    principalId: playbook.identity.principalId
    roleIds: [
      workspaceReaderRoleId
    ]
  }
}

output playbookId string = playbook.id
output playbookName string = playbook.name
output principalId string = playbook.identity.principalId
