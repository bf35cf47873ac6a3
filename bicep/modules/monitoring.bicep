// Log Analytics workspace and workspace-based Application Insights for the Function App.
// This workspace holds the app's telemetry only; the Sentinel workspace stays separate.

@description('Azure region of both resources.')
param location string

@description('Tags applied to both resources.')
param tags object

@description('Name of the Log Analytics workspace for the app telemetry.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Days the workspace keeps telemetry.')
@minValue(30)
@maxValue(730)
param retentionInDays int

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Ingestion accepts Entra ID tokens only: the instrumentation key in the connection
    // string is not enough to send telemetry.
    DisableLocalAuth: true
  }
}

output appInsightsName string = appInsights.name

// The app sends telemetry with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING
// and Monitoring Metrics Publisher), because local authentication is off.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
