// Example Microsoft Sentinel automation rule: runs the playbook for every new incident.
// Deployed into the workspace's resource group. For production, narrow it with conditions
// (analytics rule, severity, product) in the portal or here.

@description('Name of the Log Analytics workspace that Microsoft Sentinel runs on.')
param workspaceName string

@description('Display name of the automation rule.')
param displayName string

@description('Order among the workspace\'s automation rules, 1 to 1000; lower runs first.')
@minValue(1)
@maxValue(1000)
param order int

@description('Enable the rule; false keeps it in the workspace, switched off.')
param isEnabled bool

@description('Resource id of the playbook (Logic App) to run.')
param playbookId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource rule 'Microsoft.SecurityInsights/automationRules@2024-09-01' = {
  name: guid(workspace.id, playbookId)
  scope: workspace
  properties: {
    displayName: displayName
    order: order
    triggeringLogic: {
      isEnabled: isEnabled
      triggersOn: 'Incidents'
      triggersWhen: 'Created'
      conditions: []
    }
    actions: [
      {
        order: 1
        actionType: 'RunPlaybook'
        actionConfiguration: {
          logicAppResourceId: playbookId
          tenantId: tenant().tenantId
        }
      }
    ]
  }
}

output automationRuleName string = rule.name
