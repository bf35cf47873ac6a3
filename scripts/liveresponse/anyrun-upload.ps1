<#
.SYNOPSIS
    Live Response script for Windows hosts: uploads one file to Azure Blob
    Storage so that the connector can submit it to the ANY.RUN sandbox.

.DESCRIPTION
    Usage: anyrun-upload.ps1 v1.<base64url JSON>

    The only argument is "v1." followed by the unpadded base64url (RFC 4648
    section 5) encoding of a UTF-8 JSON object:
      path        string, required: full path of the file on this host
      sha256      string, required: 64 hex digits, checked before the upload
      sha1        string, optional: 40 hex digits, checked too when present
      url         string, required: SAS URL of the destination blob with create
                  and write permission, https://<account>.blob.core.windows.net/
                  <container>/<blob>?<sas>. http is accepted only for 127.0.0.1
                  and localhost (Azurite).
      max_bytes   integer, optional: files larger than this are not uploaded
      threat_name string, optional: Defender threat name. When restoring by
                  path finds nothing, the script restores all quarantined items
                  of this threat and keeps the one with the expected SHA-256.
    null counts as absent for the optional fields, and unknown fields are
    ignored. Defender rejects Live Response arguments that contain shell
    metacharacters such as & ; | $ ( ), and every SAS URL contains &, hence the
    encoding.

    The script copies the file into a private folder (ACL for the current user
    and SYSTEM only, inheritance off, excluded from Defender scans), or restores
    it there with MpCmdRun.exe when it is no longer on disk. It checks the
    hashes, then uploads the copy with one Put Blob request (up to 4 MiB) or with
    Put Block requests of 4 MiB each followed by Put Block List. The file is
    streamed from disk in 80 KiB pieces and never held in memory as a whole.
    Each request is sent up to 5 times. A request without a response (connect
    failure, timeout, dropped connection) or with HTTP 408, 429, 500, 502, 503
    or 504 is retried after 1, 2, 4 and 8 s, unless the wait would pass the
    time budget. Each retry writes a warning to stderr.

    Output: exactly one JSON line on stdout.
      {"status":"uploaded","size":N,"sha256":"<hex>","source":"disk"|"quarantine"}
      {"status":"failed","reason":"<code>","message":"<text>"}
    Reason codes: bad_argument, file_not_found, copy_failed, restore_failed,
    too_large, hash_mismatch, upload_failed, internal_error. Warnings go to
    stderr. The exit code is 0 after an upload and 1 otherwise. The SAS URL is
    never written anywhere. It is still visible, in encoded form, in this
    script's own command line, because Live Response passes it there.

    The finally block removes the private folder and then the Defender
    exclusion on every exit path except a killed process.

    What was and was not run: this script has not been run. PowerShell is not
    installed where it was written. Its tests only parse it with the
    tree-sitter PowerShell grammar and check its text. The bash counterpart,
    anyrun-upload.sh, implements the same contract and is tested against
    Azurite. Written for Windows PowerShell 5.1 (.NET Framework 4.5 or later).
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [string]$Payload
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$BlockSize = 4MB            # also the largest file sent with one Put Blob
$MaxBlocks = 50000          # maximum number of committed blocks in a block blob
$StorageApiVersion = '2021-08-06'
$MaxEnvelopeChars = 32768
$MaxMessageChars = 400
$StreamBufferBytes = 81920
$RequestTimeoutMilliseconds = 300000
# Live Response stops a script after 10 minutes. So that cleanup still runs, no
# request starts after 9 minutes, and the timeouts of each request are capped
# at the time left.
$TimeBudgetSeconds = 540
# Each PUT is sent at most $MaxPutAttempts times, and retry N waits
# $RetryDelaysSeconds[N - 1] seconds first.
$MaxPutAttempts = 5
$RetryDelaysSeconds = @(1, 2, 4, 8)
# HTTP statuses and WebExceptionStatus values (failures without a response)
# after which a PUT is retried. Everything else, NameResolutionFailure and
# TrustFailure included, fails at once.
$RetryStatusCodes = @(408, 429, 500, 502, 503, 504)
$RetryWebStatuses = @('ConnectFailure', 'Timeout', 'ConnectionClosed', 'ReceiveFailure', 'SendFailure', 'KeepAliveFailure', 'PipelineFailure')

$script:BlobUrl = ''
$script:BlobQuery = ''
$script:WorkDir = $null
$script:ExclusionPath = $null
$script:Result = $null
$script:MpCmdRunExitCode = $null
$script:Stopwatch = [System.Diagnostics.Stopwatch]::StartNew()

# ---------------------------------------------------------------------------
# Failures and output

# Return an exception that the main catch block reports with the given reason.
function New-Failure([string]$Reason, [string]$Message) {
    $exception = New-Object System.Exception($Message)
    $exception.Data['Reason'] = $Reason
    return $exception
}

function Write-ScriptWarning([string]$Message) {
    [Console]::Error.WriteLine('anyrun-upload: warning: ' + (Protect-Text $Message))
}

# Replace the SAS URL, its query string and every sig= value with placeholders.
function Protect-Text([string]$Text) {
    if ($script:BlobUrl) {
        $Text = $Text.Replace($script:BlobUrl, '<url>')
    }
    if ($script:BlobQuery) {
        $Text = $Text.Replace($script:BlobQuery, '<sas>')
    }
    return [regex]::Replace($Text, 'sig=[^&\s]+', 'sig=<redacted>')
}

# Convert $Value to compact JSON with every non-ASCII character escaped, so the
# line survives whatever code page the console output uses.
function ConvertTo-AsciiJson($Value) {
    $json = ConvertTo-Json -InputObject $Value -Compress
    return [regex]::Replace($json, '[^\x00-\x7F]', {
            param($character)
            '\u{0:x4}' -f [int][char]$character.Value
        })
}

# ---------------------------------------------------------------------------
# Argument

function ConvertFrom-Envelope([string]$Envelope) {
    if ([string]::IsNullOrEmpty($Envelope)) {
        throw (New-Failure 'bad_argument' 'expected one argument: the v1 envelope')
    }
    if ($Envelope.Length -gt $MaxEnvelopeChars) {
        throw (New-Failure 'bad_argument' "argument is longer than $MaxEnvelopeChars characters")
    }
    if ($Envelope -cmatch '^(v[0-9]{1,4})\.' -and $Matches[1] -ne 'v1') {
        throw (New-Failure 'bad_argument' "unsupported envelope version $($Matches[1]); this script reads v1")
    }
    if (-not $Envelope.StartsWith('v1.', [StringComparison]::Ordinal)) {
        throw (New-Failure 'bad_argument' 'argument is not a v1 envelope (expected v1.<base64url JSON>)')
    }
    $encoded = $Envelope.Substring(3)
    if ($encoded -cnotmatch '^[A-Za-z0-9_-]+$' -or ($encoded.Length % 4) -eq 1) {
        throw (New-Failure 'bad_argument' 'envelope payload is not unpadded base64url')
    }
    $base64 = $encoded.Replace('-', '+').Replace('_', '/')
    $base64 += '=' * ((4 - $base64.Length % 4) % 4)
    try {
        $bytes = [Convert]::FromBase64String($base64)
        $strictUtf8 = New-Object System.Text.UTF8Encoding($false, $true)
        $json = $strictUtf8.GetString($bytes)
    } catch {
        throw (New-Failure 'bad_argument' 'envelope payload is not base64url of UTF-8 text')
    }
    if ($json.IndexOf([char]0) -ge 0) {
        throw (New-Failure 'bad_argument' 'envelope JSON contains NUL characters')
    }
    try {
        $object = ConvertFrom-Json -InputObject $json
    } catch {
        throw (New-Failure 'bad_argument' 'envelope is not valid JSON')
    }
    if ($object -isnot [System.Management.Automation.PSCustomObject]) {
        throw (New-Failure 'bad_argument' 'envelope JSON must be an object')
    }
    return $object
}

# Return the value of a string field, or '' for an absent or null optional one.
# PowerShell matches property names case-insensitively.
function Get-StringField($Object, [string]$Name, [bool]$Required) {
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property -or $null -eq $property.Value) {
        if ($Required) {
            throw (New-Failure 'bad_argument' "envelope JSON is missing the string field `"$Name`"")
        }
        return ''
    }
    if ($property.Value -isnot [string]) {
        throw (New-Failure 'bad_argument' "envelope field `"$Name`" must be a string")
    }
    return $property.Value
}

# Check the SAS URL without ever putting it into a message.
function Test-BlobUrl([string]$Url) {
    $uri = $null
    if ($Url -match '[^\x21-\x7E]|["\\]' -or -not [Uri]::TryCreate($Url, [UriKind]::Absolute, [ref]$uri)) {
        throw (New-Failure 'bad_argument' 'url is not a blob SAS URL of the form https://<account>.blob.core.windows.net/<container>/<blob>?<sas>')
    }
    $isLoopback = $uri.Host -eq '127.0.0.1' -or $uri.Host -eq 'localhost'
    if ($uri.Scheme -eq 'http' -and -not $isLoopback) {
        throw (New-Failure 'bad_argument' "url must use https; http is accepted only for 127.0.0.1 and localhost, not for host $($uri.Host)")
    }
    if ($uri.Scheme -ne 'https' -and $uri.Scheme -ne 'http') {
        throw (New-Failure 'bad_argument' "url scheme $($uri.Scheme) is not supported; use https")
    }
    if ($uri.UserInfo -or $uri.Fragment) {
        throw (New-Failure 'bad_argument' 'url must not contain user info or a fragment')
    }
    if ($uri.AbsolutePath -notmatch '^/[^/]+/.*[^/]$') {
        throw (New-Failure 'bad_argument' "url path must name a container and a blob (host $($uri.Host))")
    }
    if ($uri.Query.Length -lt 2 -or ('&' + $uri.Query.Substring(1)) -notmatch '&sig=[^&]') {
        throw (New-Failure 'bad_argument' 'url has no SAS signature (sig parameter) in its query string')
    }
    $script:BlobUrl = $Url
    $script:BlobQuery = $uri.Query.Substring(1)
}

function Read-Arguments([string]$Envelope) {
    $object = ConvertFrom-Envelope $Envelope
    $arguments = @{}

    $path = Get-StringField $object 'path' $true
    if ($path -notmatch '^([A-Za-z]:\\|\\\\)') {
        throw (New-Failure 'bad_argument' 'path must be a full path such as C:\dir\file.exe or \\server\share\file.exe')
    }
    $arguments.Path = $path

    $sha256 = Get-StringField $object 'sha256' $true
    if ($sha256 -notmatch '^[0-9A-Fa-f]{64}$') {
        throw (New-Failure 'bad_argument' 'sha256 must be 64 hex digits')
    }
    $arguments.Sha256 = $sha256.ToLowerInvariant()

    $sha1 = Get-StringField $object 'sha1' $false
    if ($sha1 -and $sha1 -notmatch '^[0-9A-Fa-f]{40}$') {
        throw (New-Failure 'bad_argument' 'sha1 must be 40 hex digits')
    }
    $arguments.Sha1 = $sha1.ToLowerInvariant()

    $arguments.ThreatName = Get-StringField $object 'threat_name' $false

    # Set BlobUrl before the check so that a failure is redacted even if it
    # quoted the URL.
    $url = Get-StringField $object 'url' $true
    $script:BlobUrl = $url
    Test-BlobUrl $url

    $arguments.MaxBytes = $null
    $maxBytes = $object.PSObject.Properties['max_bytes']
    if ($null -ne $maxBytes -and $null -ne $maxBytes.Value) {
        $value = $maxBytes.Value
        if (($value -isnot [int] -and $value -isnot [long]) -or $value -lt 0) {
            throw (New-Failure 'bad_argument' 'max_bytes must be a non-negative integer')
        }
        $arguments.MaxBytes = [long]$value
    }
    return $arguments
}

# ---------------------------------------------------------------------------
# Private folder and Defender exclusion

function New-PrivateFolder {
    $path = Join-Path ([System.IO.Path]::GetTempPath()) ('anyrun-upload.' + [Guid]::NewGuid().ToString('N'))
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    # Protect the ACL (inheritance off) and drop the inherited entries.
    $security.SetAccessRuleProtection($true, $false)
    $inheritance = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
    $propagation = [System.Security.AccessControl.PropagationFlags]::None
    $allow = [System.Security.AccessControl.AccessControlType]::Allow
    $fullControl = [System.Security.AccessControl.FileSystemRights]::FullControl
    $currentUser = [System.Security.Principal.WindowsIdentity]::GetCurrent().User
    $localSystem = New-Object System.Security.Principal.SecurityIdentifier('S-1-5-18')
    foreach ($sid in @($currentUser, $localSystem)) {
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($sid, $fullControl, $inheritance, $propagation, $allow)
        $security.AddAccessRule($rule)
    }
    # Creating the folder with its ACL leaves no moment in which it is open to others.
    [void][System.IO.Directory]::CreateDirectory($path, $security)
    $script:WorkDir = $path
}

# Exclude the private folder from Defender scans so that real-time protection
# does not quarantine the copy again. Failure is only a warning: the copy from
# disk may still work, and a restored file that is removed again shows up as a
# restore failure.
function Add-AvExclusion {
    try {
        Add-MpPreference -ExclusionPath $script:WorkDir
        $script:ExclusionPath = $script:WorkDir
    } catch {
        Write-ScriptWarning "could not add a Defender exclusion for the private folder: $($_.Exception.Message)"
        return
    }
    # The exclusion can take a few seconds to apply. Wait up to 10 s for it.
    for ($attempt = 0; $attempt -lt 10; $attempt++) {
        $preferences = Get-MpPreference -ErrorAction SilentlyContinue
        if ($null -ne $preferences -and @($preferences.ExclusionPath) -contains $script:WorkDir) {
            return
        }
        Start-Sleep -Seconds 1
    }
    Write-ScriptWarning 'the Defender exclusion for the private folder did not show in Get-MpPreference within 10 s'
}

# Delete the private folder, then drop the Defender exclusion. In the other
# order the real-time scan could quarantine the copy on its way out, which would
# add a quarantine entry and an alert for the private folder.
function Remove-PrivateState {
    if ($script:WorkDir) {
        try {
            Remove-Item -LiteralPath $script:WorkDir -Recurse -Force
        } catch {
            Write-ScriptWarning "could not remove the private folder $($script:WorkDir): $($_.Exception.Message)"
        }
        $script:WorkDir = $null
    }
    if ($script:ExclusionPath) {
        try {
            Remove-MpPreference -ExclusionPath $script:ExclusionPath
        } catch {
            Write-ScriptWarning "could not remove the Defender exclusion $($script:ExclusionPath); remove it with: Remove-MpPreference -ExclusionPath '$($script:ExclusionPath)'"
        }
        $script:ExclusionPath = $null
    }
}

# ---------------------------------------------------------------------------
# Getting the file

function Test-FileSize([long]$Size, $MaxBytes) {
    if ($null -ne $MaxBytes -and $Size -gt $MaxBytes) {
        throw (New-Failure 'too_large' "file is $Size bytes, more than max_bytes $MaxBytes")
    }
    if ($Size -gt [long]$MaxBlocks * $BlockSize) {
        throw (New-Failure 'too_large' "file is $Size bytes, more than the maximum of $MaxBlocks blocks of $BlockSize bytes")
    }
}

function Get-Sha256([string]$Path) {
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Copy-FromDisk($Arguments) {
    $size = (Get-Item -LiteralPath $Arguments.Path -Force).Length
    Test-FileSize $size $Arguments.MaxBytes
    Add-AvExclusion
    $copy = Join-Path $script:WorkDir 'file'
    try {
        Copy-Item -LiteralPath $Arguments.Path -Destination $copy -Force
    } catch {
        throw (New-Failure 'copy_failed' "cannot copy $($Arguments.Path): $($_.Exception.Message)")
    }
    return $copy
}

# Return the newest MpCmdRun.exe. The platform folder contains the current one,
# and Program Files the one that shipped with Windows.
function Find-MpCmdRun {
    $platform = Join-Path $env:ProgramData 'Microsoft\Windows Defender\Platform'
    if (Test-Path -LiteralPath $platform) {
        $folders = Get-ChildItem -LiteralPath $platform -Directory | Sort-Object -Descending -Property {
            $version = $null
            if ([version]::TryParse(($_.Name -replace '-.*$', ''), [ref]$version)) { $version } else { [version]'0.0' }
        }
        foreach ($folder in $folders) {
            $candidate = Join-Path $folder.FullName 'MpCmdRun.exe'
            if (Test-Path -LiteralPath $candidate) {
                return $candidate
            }
        }
    }
    $shipped = Join-Path $env:ProgramFiles 'Windows Defender\MpCmdRun.exe'
    if (Test-Path -LiteralPath $shipped) {
        return $shipped
    }
    return $null
}

# Run MpCmdRun.exe with the given arguments. Returns its last output line.
function Invoke-MpCmdRun([string]$MpCmdRun, [string[]]$ArgumentList) {
    # With 'Stop', Windows PowerShell 5.1 turns any stderr line of a native
    # command redirected with 2>&1 into a terminating error.
    $ErrorActionPreference = 'Continue'
    $output = @(& $MpCmdRun @ArgumentList 2>&1 | ForEach-Object { "$_".Trim() } | Where-Object { $_ })
    $script:MpCmdRunExitCode = $LASTEXITCODE
    if ($output.Length -gt 0) {
        return $output[$output.Length - 1]
    }
    return ''
}

# Return the restored file whose SHA-256 matches, because a restore may bring
# back several files and may name them differently.
function Find-RestoredFile([string]$Folder, [string]$Sha256) {
    $files = @(Get-ChildItem -LiteralPath $Folder -Recurse -File -Force)
    foreach ($file in $files) {
        if ((Get-Sha256 $file.FullName) -eq $Sha256) {
            return $file.FullName
        }
    }
    if ($files.Length -gt 0) {
        throw (New-Failure 'hash_mismatch' "no file restored from quarantine has SHA-256 $Sha256")
    }
    return $null
}

function Restore-FromQuarantine($Arguments) {
    $mpCmdRun = Find-MpCmdRun
    if (-not $mpCmdRun) {
        throw (New-Failure 'file_not_found' "file not found on disk: $($Arguments.Path); quarantine restore is unavailable because MpCmdRun.exe was not found")
    }
    Add-AvExclusion
    $restoreFolder = Join-Path $script:WorkDir 'restore'
    [void](New-Item -ItemType Directory -Path $restoreFolder)

    $lastLine = Invoke-MpCmdRun $mpCmdRun @('-Restore', '-FilePath', $Arguments.Path, '-Path', $restoreFolder)
    $restored = Find-RestoredFile $restoreFolder $Arguments.Sha256
    if (-not $restored -and $Arguments.ThreatName) {
        $lastLine = Invoke-MpCmdRun $mpCmdRun @('-Restore', '-Name', $Arguments.ThreatName, '-All', '-Path', $restoreFolder)
        $restored = Find-RestoredFile $restoreFolder $Arguments.Sha256
    }
    if (-not $restored) {
        throw (New-Failure 'restore_failed' "file not found on disk, and MpCmdRun.exe restored nothing for $($Arguments.Path) (exit code $($script:MpCmdRunExitCode)): $lastLine")
    }
    return $restored
}

function Test-Copy([string]$Copy, $Arguments) {
    $size = (Get-Item -LiteralPath $Copy -Force).Length
    Test-FileSize $size $Arguments.MaxBytes
    $sha256 = Get-Sha256 $Copy
    if ($sha256 -ne $Arguments.Sha256) {
        throw (New-Failure 'hash_mismatch' "SHA-256 of $($Arguments.Path) is $sha256, expected $($Arguments.Sha256)")
    }
    if ($Arguments.Sha1) {
        $sha1 = (Get-FileHash -LiteralPath $Copy -Algorithm SHA1).Hash.ToLowerInvariant()
        if ($sha1 -ne $Arguments.Sha1) {
            throw (New-Failure 'hash_mismatch' "SHA-1 of $($Arguments.Path) is $sha1, expected $($Arguments.Sha1)")
        }
    }
    return $size
}

# ---------------------------------------------------------------------------
# Upload

function Find-WebException($Exception) {
    while ($null -ne $Exception) {
        if ($Exception -is [System.Net.WebException]) {
            return $Exception
        }
        $Exception = $Exception.InnerException
    }
    return $null
}

# PUT $Length bytes read from $Source to the blob URL with query suffix
# $Suffix, retrying transient failures. Throws an upload_failed failure unless
# an attempt gets HTTP 201. A retry is safe because every PUT is idempotent. It
# writes the same bytes to the same blob name or block id, so a retry after a
# lost response stores the same content again.
function Invoke-BlobPut {
    param(
        [string]$Suffix,
        [string]$Operation,
        [string]$ContentType,
        [hashtable]$Headers,
        [System.IO.Stream]$Source,
        [long]$Length
    )
    # A retry rewinds $Source to here and sends the same bytes again.
    $startPosition = $Source.Position
    for ($attempt = 1; ; $attempt++) {
        $remainingMilliseconds = [int](($TimeBudgetSeconds - $script:Stopwatch.Elapsed.TotalSeconds) * 1000)
        if ($remainingMilliseconds -le 0) {
            throw (New-Failure 'upload_failed' "time budget of $TimeBudgetSeconds s ran out during the upload ($Operation)")
        }
        $timeout = [Math]::Min($RequestTimeoutMilliseconds, $remainingMilliseconds)
        $failure = Send-BlobPutAttempt $Suffix $Operation $ContentType $Headers $Source $Length $timeout
        if ($null -eq $failure) {
            return
        }
        if ($attempt -ge $MaxPutAttempts) {
            throw (New-Failure 'upload_failed' "$failure after $attempt attempts")
        }
        $delay = $RetryDelaysSeconds[$attempt - 1]
        if ($script:Stopwatch.Elapsed.TotalSeconds + $delay -ge $TimeBudgetSeconds) {
            throw (New-Failure 'upload_failed' "$failure after $attempt attempts, with no time left in the budget of $TimeBudgetSeconds s for a retry")
        }
        Write-ScriptWarning "$failure; retrying in $delay s (attempt $($attempt + 1) of $MaxPutAttempts)"
        Start-Sleep -Seconds $delay
        $Source.Position = $startPosition
    }
}

# Send one PUT with the given timeout. Returns $null after HTTP 201, or the
# message of a failure that Invoke-BlobPut may retry. Throws an upload_failed
# failure for any other failure.
function Send-BlobPutAttempt {
    param(
        [string]$Suffix,
        [string]$Operation,
        [string]$ContentType,
        [hashtable]$Headers,
        [System.IO.Stream]$Source,
        [long]$Length,
        [int]$TimeoutMilliseconds
    )
    # NOTE: not run. System.Uri must pass the %2B, %2F and %3D of the signature
    # through unchanged. The .NET Framework documents unescaping %2F in paths,
    # not in queries.
    $request = [System.Net.HttpWebRequest]::Create((New-Object Uri ($script:BlobUrl + $Suffix)))
    $request.Method = 'PUT'
    $request.ContentType = $ContentType
    $request.ContentLength = $Length
    $request.AllowWriteStreamBuffering = $false
    $request.AllowAutoRedirect = $false
    $request.Timeout = $TimeoutMilliseconds
    $request.ReadWriteTimeout = $TimeoutMilliseconds
    $request.Headers.Add('x-ms-version', $StorageApiVersion)
    foreach ($name in $Headers.Keys) {
        $request.Headers.Add($name, $Headers[$name])
    }
    $buffer = New-Object byte[] $StreamBufferBytes
    try {
        $body = $request.GetRequestStream()
        try {
            $remaining = $Length
            while ($remaining -gt 0) {
                $read = $Source.Read($buffer, 0, [int][Math]::Min([long]$buffer.Length, $remaining))
                if ($read -le 0) {
                    throw (New-Failure 'internal_error' "the copy ended $remaining bytes early during $Operation")
                }
                $body.Write($buffer, 0, $read)
                $remaining -= $read
            }
        } finally {
            $body.Dispose()
        }
        $response = $request.GetResponse()
        $status = [int]$response.StatusCode
        $response.Dispose()
    } catch {
        $webError = Find-WebException $_.Exception
        # NOTE: not run. A connection lost while the body is written may surface
        # as an IOException without a WebException, which ends as internal_error
        # with no retry.
        if ($null -eq $webError) {
            throw
        }
        if ($null -eq $webError.Response) {
            # Status names the failure (NameResolutionFailure, ConnectFailure,
            # Timeout, TrustFailure) without the URL that the message may hold.
            $message = "$Operation failed: $($webError.Status)"
            if ($RetryWebStatuses -contains [string]$webError.Status) {
                return $message
            }
            throw (New-Failure 'upload_failed' $message)
        }
        $status = [int]$webError.Response.StatusCode
        $errorCode = $webError.Response.Headers['x-ms-error-code']
        $webError.Response.Dispose()
        $message = "$Operation returned HTTP $status"
        if ($errorCode -match '^[A-Za-z0-9]+$') {
            $message += " ($errorCode)"
        }
        if ($RetryStatusCodes -contains $status) {
            return $message
        }
        throw (New-Failure 'upload_failed' $message)
    }
    if ($status -eq 201) {
        return $null
    }
    $message = "$Operation returned HTTP $status"
    if ($RetryStatusCodes -contains $status) {
        return $message
    }
    throw (New-Failure 'upload_failed' $message)
}

function Send-File([string]$Copy, [long]$Size) {
    $stream = [System.IO.File]::Open($Copy, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]::Read)
    try {
        if ($Size -le $BlockSize) {
            $headers = @{ 'x-ms-blob-type' = 'BlockBlob' }
            Invoke-BlobPut '' 'Put Blob' 'application/octet-stream' $headers $stream $Size
            return
        }
        $blockCount = [long][Math]::Ceiling($Size / [double]$BlockSize)
        $blockList = New-Object System.Text.StringBuilder
        [void]$blockList.Append('<?xml version="1.0" encoding="utf-8"?><BlockList>')
        for ($index = 0; $index -lt $blockCount; $index++) {
            # Block ids must all have the same length. The base64 of this
            # 12-character ASCII text is 16 characters of [A-Za-z0-9] only, so
            # it needs no escaping in the query string.
            $blockId = [Convert]::ToBase64String([System.Text.Encoding]::ASCII.GetBytes(('block-{0:D6}' -f $index)))
            $length = [Math]::Min([long]$BlockSize, $Size - $index * [long]$BlockSize)
            $operation = "Put Block $($index + 1)/$blockCount"
            Invoke-BlobPut "&comp=block&blockid=$blockId" $operation 'application/octet-stream' @{} $stream $length
            [void]$blockList.Append("<Latest>$blockId</Latest>")
        }
        [void]$blockList.Append('</BlockList>')
        $listBytes = (New-Object System.Text.UTF8Encoding($false)).GetBytes($blockList.ToString())
        $listStream = New-Object System.IO.MemoryStream(, $listBytes)
        $headers = @{ 'x-ms-blob-content-type' = 'application/octet-stream' }
        Invoke-BlobPut '&comp=blocklist' 'Put Block List' 'application/xml' $headers $listStream $listBytes.Length
    } finally {
        $stream.Dispose()
    }
}

# ---------------------------------------------------------------------------

function Invoke-Upload([string]$Envelope) {
    $arguments = Read-Arguments $Envelope
    # Azure Storage accepts TLS 1.2 or later, which .NET Framework 4.5 does not
    # offer by default.
    [System.Net.ServicePointManager]::SecurityProtocol = [System.Net.ServicePointManager]::SecurityProtocol -bor [System.Net.SecurityProtocolType]::Tls12
    New-PrivateFolder
    if (Test-Path -LiteralPath $arguments.Path -PathType Leaf) {
        $copy = Copy-FromDisk $arguments
        $source = 'disk'
    } elseif (Test-Path -LiteralPath $arguments.Path) {
        throw (New-Failure 'file_not_found' "path exists but is not a file: $($arguments.Path)")
    } else {
        $copy = Restore-FromQuarantine $arguments
        $source = 'quarantine'
    }
    $size = Test-Copy $copy $arguments
    Send-File $copy $size
    $script:Result = [ordered]@{
        status = 'uploaded'
        size   = [long]$size
        sha256 = $arguments.Sha256
        source = $source
    }
}

$exitCode = 1
try {
    # Discard anything a command leaks into the output stream: stdout must hold
    # only the result line.
    $null = Invoke-Upload $Payload
    $exitCode = 0
} catch {
    $failure = $_.Exception
    if ($failure.Data.Contains('Reason')) {
        $reason = [string]$failure.Data['Reason']
        $message = $failure.Message
    } else {
        $reason = 'internal_error'
        $message = "unexpected error at line $($_.InvocationInfo.ScriptLineNumber): $($failure.GetType().Name): $($failure.Message)"
    }
    $message = Protect-Text $message
    if ($message.Length -gt $MaxMessageChars) {
        $message = $message.Substring(0, $MaxMessageChars) + '...'
    }
    $script:Result = [ordered]@{
        status  = 'failed'
        reason  = $reason
        message = $message
    }
} finally {
    Remove-PrivateState
}
[Console]::Out.WriteLine((ConvertTo-AsciiJson $script:Result))
exit $exitCode
