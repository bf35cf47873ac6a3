// Role assignments on the Microsoft Sentinel (Log Analytics) workspace. Deployed into the
// workspace's resource group, which may differ from the connector's.

@description('Name of the Log Analytics workspace that Microsoft Sentinel runs on.')
param workspaceName string

@description('Object id of the service principal or managed identity that receives the roles.')
param principalId string

@description('Role definition ids to assign on the workspace.')
param roleIds array

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource workspaceRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in roleIds: {
    name: guid(workspace.id, principalId, roleId)
    scope: workspace
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]
