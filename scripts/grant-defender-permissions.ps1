#Requires -Version 7.0
<#
.SYNOPSIS
    Grant the connector's managed identity the Microsoft Defender for Endpoint API roles.

.DESCRIPTION
    Defender for Endpoint API permissions are application roles of the WindowsDefenderATP
    service principal. Azure RBAC, and so the Bicep template, cannot grant them: they are
    appRoleAssignments in Microsoft Entra ID. This script, through Microsoft Graph:

    1. reads the service principal of the Function App's managed identity (-PrincipalId);
    2. finds the WindowsDefenderATP service principal by its appId
       fc780465-2017-40d4-a0c5-307022471b92;
    3. resolves every required role value to its appRole id, and stops before any change
       if one is missing;
    4. creates the appRoleAssignments the identity does not have yet.

    Running it again creates nothing once every role is assigned. With -DryRun it reads the
    same objects, prints what it would create and changes nothing.

    Output names object ids, display names and role values only. The script never requests,
    reads or prints an access token or any other secret.

    Signing in needs the Microsoft.Graph.Authentication module. When no Graph session exists,
    the script runs Connect-MgGraph with the scopes Application.Read.All and, unless
    -DryRun is set, AppRoleAssignment.ReadWrite.All. Granting application roles also needs
    an administrator role in Entra ID, such as Privileged Role Administrator.

.PARAMETER PrincipalId
    Object id of the Function App's managed identity: the functionAppPrincipalId output of
    bicep/main.bicep.

.PARAMETER DryRun
    Print the role assignments that would be created and change nothing.

.PARAMETER Environment
    Microsoft Graph cloud used when the script signs in itself: Global (default), USGov,
    USGovDoD or China. An existing Graph session is used as it is.

.EXAMPLE
    ./scripts/grant-defender-permissions.ps1 -PrincipalId 00000000-0000-0000-0000-000000000000 -DryRun

.EXAMPLE
    ./scripts/grant-defender-permissions.ps1 -PrincipalId 00000000-0000-0000-0000-000000000000
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')]
    [string] $PrincipalId,

    [switch] $DryRun,

    [ValidateSet('Global', 'USGov', 'USGovDoD', 'China')]
    [string] $Environment = 'Global'
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Application id of the WindowsDefenderATP API; the same in every tenant.
$DefenderAppId = 'fc780465-2017-40d4-a0c5-307022471b92'

# Application roles the connector needs on the Defender for Endpoint API.
$RequiredRoles = @(
    'Machine.LiveResponse'      # run Live Response sessions (PutFile, RunScript, GetFile)
    'Machine.Read.All'          # read devices and machine actions, download Live Response results
    'Library.Manage'            # upload the Live Response scripts to the library
    'Alert.ReadWrite.All'       # comment on Defender alerts
    'AdvancedQuery.Read.All'    # run advanced hunting queries
)

$GraphScopes = @('Application.Read.All')
if (-not $DryRun) {
    $GraphScopes += 'AppRoleAssignment.ReadWrite.All'
}


function Get-HttpStatusCode {
    # Return the HTTP status of a failed Invoke-MgGraphRequest call, or 0 when the error
    # carries no response (network failure, missing module).
    param([System.Management.Automation.ErrorRecord] $ErrorRecord)

    $response = $ErrorRecord.Exception.PSObject.Properties['Response']
    if ($null -ne $response -and $null -ne $response.Value) {
        return [int] $response.Value.StatusCode
    }
    return 0
}


function Invoke-Graph {
    # Send one Graph request and return its body as a hashtable, or $null for 404.
    # Purpose completes the sentence "Failed to ..." in error messages.
    param(
        [Parameter(Mandatory = $true)] [ValidateSet('GET', 'POST')] [string] $Method,
        [Parameter(Mandatory = $true)] [string] $Uri,
        [Parameter(Mandatory = $true)] [string] $Purpose,
        [hashtable] $Body
    )

    $request = @{
        Method     = $Method
        Uri        = $Uri
        OutputType = 'HashTable'
    }
    if ($null -ne $Body) {
        $request.Body = $Body | ConvertTo-Json -Compress
        $request.ContentType = 'application/json'
    }

    try {
        return Invoke-MgGraphRequest @request
    }
    catch {
        $status = Get-HttpStatusCode $_
        if ($status -eq 404) {
            return $null
        }
        if ($status -eq 403) {
            throw ("Insufficient privileges: failed to $Purpose (HTTP 403). Sign in with " +
                "Connect-MgGraph -Scopes $($GraphScopes -join ',') as an administrator who " +
                "may grant application roles, such as a Privileged Role Administrator.")
        }
        if ($status -eq 401) {
            throw "Not signed in to Microsoft Graph: failed to $Purpose (HTTP 401). Run Connect-MgGraph and try again."
        }
        throw "Failed to $Purpose (HTTP $status): $($_.Exception.Message)"
    }
}


function Connect-Graph {
    # Reuse the current Graph session, or sign in with the scopes this run needs.
    if (-not (Get-Module -ListAvailable -Name 'Microsoft.Graph.Authentication')) {
        throw ("The PowerShell module Microsoft.Graph.Authentication is missing. Install it with " +
            "Install-Module Microsoft.Graph.Authentication -Scope CurrentUser and run the script again.")
    }
    Import-Module 'Microsoft.Graph.Authentication'

    $context = Get-MgContext
    if ($null -eq $context) {
        Connect-MgGraph -Scopes $GraphScopes -Environment $Environment -NoWelcome
        $context = Get-MgContext
    }
    elseif ($context.AuthType -eq 'Delegated') {
        $missing = @($GraphScopes | Where-Object { $context.Scopes -notcontains $_ })
        if ($missing.Count -gt 0) {
            Write-Warning ("The current Graph session lacks the scopes $($missing -join ', '); " +
                "requests that need them fail with HTTP 403. Run Connect-MgGraph -Scopes " +
                "$($GraphScopes -join ',') to add them.")
        }
    }
    Write-Host "Microsoft Graph: tenant $($context.TenantId), account $($context.Account), cloud $($context.Environment)"
}


function Get-AssignedAppRoleIds {
    # Return the ids of the app roles of ResourceId that the identity already holds.
    param([Parameter(Mandatory = $true)] [string] $ResourceId)

    $assigned = @{}
    $uri = "v1.0/servicePrincipals/${PrincipalId}/appRoleAssignments"
    while ($uri) {
        $page = Invoke-Graph -Method GET -Uri $uri -Purpose "list the app role assignments of $PrincipalId"
        if ($null -eq $page) {
            break
        }
        foreach ($assignment in @($page['value'])) {
            if ($assignment['resourceId'] -eq $ResourceId) {
                $assigned[$assignment['appRoleId']] = $true
            }
        }
        $uri = $page['@odata.nextLink']
    }
    return $assigned
}


function Add-AppRoleAssignment {
    # Create one appRoleAssignment, or only report it when -DryRun is set.
    param(
        [Parameter(Mandatory = $true)] [string] $ResourceId,
        [Parameter(Mandatory = $true)] [string] $RoleValue,
        [Parameter(Mandatory = $true)] [string] $AppRoleId
    )

    if ($DryRun) {
        Write-Host "  ${RoleValue}: would be assigned (dry run, nothing changed)"
        return
    }

    $body = @{
        principalId = $PrincipalId
        resourceId  = $ResourceId
        appRoleId   = $AppRoleId
    }
    $null = Invoke-Graph -Method POST -Uri "v1.0/servicePrincipals/${PrincipalId}/appRoleAssignments" `
        -Body $body -Purpose "assign $RoleValue to $PrincipalId"
    Write-Host "  ${RoleValue}: assigned"
}


function Grant-DefenderRoles {
    Connect-Graph

    $identity = Invoke-Graph -Method GET `
        -Uri "v1.0/servicePrincipals/${PrincipalId}?`$select=id,displayName,servicePrincipalType" `
        -Purpose "read the service principal $PrincipalId"
    if ($null -eq $identity) {
        throw ("Service principal $PrincipalId not found in this tenant. Pass the functionAppPrincipalId " +
            "output of the deployment (az deployment group show --resource-group <group> --name <deployment> " +
            "--query properties.outputs.functionAppPrincipalId.value --output tsv).")
    }
    Write-Host "Managed identity: $($identity['displayName']) ($PrincipalId)"

    $filter = [uri]::EscapeDataString("appId eq '$DefenderAppId'")
    $result = Invoke-Graph -Method GET `
        -Uri "v1.0/servicePrincipals?`$filter=$filter&`$select=id,displayName,appRoles" `
        -Purpose 'look up the WindowsDefenderATP service principal'
    $defender = $null
    if ($null -ne $result) {
        $defender = @($result['value']) | Select-Object -First 1
    }
    if ($null -eq $defender) {
        throw ("WindowsDefenderATP service principal (appId $DefenderAppId) not found in this tenant. " +
            "It exists once Microsoft Defender for Endpoint is set up for the tenant; check that you are " +
            "signed in to the tenant that runs Defender for Endpoint.")
    }
    Write-Host "Defender for Endpoint API: $($defender['displayName']) ($($defender['id']))"

    # Resolve every role before changing anything, so that a missing role leaves no partial grant.
    $appRoleIds = [ordered]@{}
    foreach ($roleValue in $RequiredRoles) {
        $role = @($defender['appRoles']) | Where-Object {
            $_['value'] -eq $roleValue -and $_['isEnabled'] -and (@($_['allowedMemberTypes']) -contains 'Application')
        } | Select-Object -First 1
        if ($null -eq $role) {
            throw ("Application role $roleValue not found on the WindowsDefenderATP service principal " +
                "$($defender['id']), or it is disabled or not assignable to applications.")
        }
        $appRoleIds[$roleValue] = $role['id']
    }

    $assigned = Get-AssignedAppRoleIds -ResourceId $defender['id']
    $missingCount = 0
    foreach ($roleValue in $RequiredRoles) {
        $appRoleId = $appRoleIds[$roleValue]
        if ($assigned.ContainsKey($appRoleId)) {
            Write-Host "  ${roleValue}: already assigned"
            continue
        }
        Add-AppRoleAssignment -ResourceId $defender['id'] -RoleValue $roleValue -AppRoleId $appRoleId
        $missingCount++
    }

    $presentCount = $RequiredRoles.Count - $missingCount
    if ($DryRun) {
        Write-Host "Dry run: $missingCount role(s) would be assigned, $presentCount already present; nothing was changed."
    }
    else {
        Write-Host "Done: $missingCount role(s) assigned, $presentCount already present."
    }
}


try {
    Grant-DefenderRoles
}
catch {
    Write-Error -Message $_.Exception.Message -ErrorAction Continue
    exit 1
}
