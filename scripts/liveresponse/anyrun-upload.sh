#!/bin/bash
# Live Response script for Linux hosts: uploads one file to Azure Blob Storage
# so that the connector can submit it to the ANY.RUN sandbox.
#
# Usage: anyrun-upload.sh v1.<base64url JSON>
#
# The only argument is "v1." followed by the unpadded base64url (RFC 4648 §5)
# encoding of a UTF-8 JSON object:
#   path       string, required: absolute path of the file on this host
#   sha256     string, required: 64 hex digits, checked before the upload
#   sha1       string, optional: 40 hex digits, checked too when present
#   url        string, required: SAS URL of the destination blob with create
#              and write permission, https://<account>.blob.core.windows.net/
#              <container>/<blob>?<sas>. http is accepted only for 127.0.0.1 and
#              localhost (Azurite).
#   max_bytes  integer, optional: files larger than this are not uploaded
# null counts as absent for the optional fields, and unknown fields are ignored.
# Defender rejects Live Response arguments that contain shell metacharacters
# such as & ; | $ ( ), and every SAS URL contains &, hence the encoding.
#
# The script copies the file into a private folder, or restores it there from
# the Defender quarantine with mdatp when it is no longer on disk. It checks the
# hashes, then uploads the copy with one Put Blob request (up to 4 MiB) or with
# Put Block requests of 4 MiB each followed by Put Block List. dd cuts one block
# at a time from the copy, so the private folder contains at most the copy and
# one block, and the file is never read into memory as a whole.
#
# Output: exactly one JSON line on stdout, and everything else on stderr.
#   {"status":"uploaded","size":N,"sha256":"<hex>","source":"disk"|"quarantine"}
#   {"status":"failed","reason":"<code>","message":"<text>"}
# Reason codes: bad_argument, missing_dependency, file_not_found, copy_failed,
# restore_failed, too_large, hash_mismatch, upload_failed, internal_error.
# The exit code is 0 after an upload and 1 otherwise.
#
# The SAS URL is never printed, logged or traced. curl reads it from a config on
# stdin, so it does not appear in curl's command line. It is still visible, in
# encoded form, in this script's own command line, because Live Response passes
# it there.
#
# Needs bash 4.2 or later (only bash 5.2 was run), coreutils, sed, find and
# curl. jq and python are not used. The private folder (mode 700) is created
# under $TMPDIR or /tmp. It is removed on every exit path together with the
# Defender exclusion added for it, except after a SIGKILL, which no trap can
# catch.

# Trace off first: `bash -x` would otherwise print every variable containing the URL.
set +xv
set -Eeuo pipefail
umask 077
# Byte semantics for ${#var}, substrings and character ranges.
export LC_ALL=C

readonly BLOCK_SIZE=4194304 # 4 MiB, also the largest file sent with one Put Blob
readonly MAX_BLOCKS=50000   # maximum number of committed blocks in a block blob
readonly STORAGE_API_VERSION=2021-08-06
readonly MAX_ENVELOPE_CHARS=32768
readonly MAX_MESSAGE_CHARS=400
readonly REQUEST_TIMEOUT_SECONDS=300

# Live Response stops a script after 10 minutes. So that cleanup still runs, no
# request starts after 9 minutes and none runs past that point. The variable
# only exists so that tests can shorten the budget.
time_budget_seconds=${ANYRUN_UPLOAD_TIME_BUDGET_SECONDS:-540}
if [[ ! $time_budget_seconds =~ ^[0-9]{1,5}$ ]]; then
  time_budget_seconds=540
fi
readonly deadline=$((SECONDS + time_budget_seconds))

# fd 3 is the real stdout and carries only the result line. Any other output of
# the commands below goes to stderr.
exec 3>&1 1>&2

workdir=""
exclusion_path=""
result_emitted=0
failed_line=""
caught_signal=""
mdatp_bin=""
hash_tool=""
blob_url=""
blob_query=""

# ---------------------------------------------------------------------------
# Output and cleanup

warn() {
  printf 'anyrun-upload: warning: %s\n' "$1" >&2
}

# Replace the SAS URL, its query string and every sig= value in $1 with
# placeholders. Sets redacted.
redact() {
  local text=$1 rest match placeholder sig_re='sig=[^&[:space:]]+'
  if [[ -n $blob_url ]]; then
    placeholder='<url>'
    text=${text//"$blob_url"/"$placeholder"}
  fi
  if [[ -n $blob_query ]]; then
    placeholder='<sas>'
    text=${text//"$blob_query"/"$placeholder"}
  fi
  redacted=""
  rest=$text
  while [[ $rest =~ $sig_re ]]; do
    match=${BASH_REMATCH[0]}
    redacted+="${rest%%"$match"*}sig=<redacted>"
    rest=${rest#*"$match"}
  done
  redacted+=$rest
}

# Escape $1 as the body of a JSON string. Sets escaped.
json_escape() {
  local s=$1 code char replacement
  # Quoted replacements stay literal: bash 5.2 expands an unquoted & in them.
  # shellcheck disable=SC1003 # two backslashes, not an escaped quote
  replacement='\\'
  s=${s//\\/"$replacement"}
  replacement='\"'
  s=${s//\"/"$replacement"}
  for code in {1..31} 127; do
    printf -v char '%b' "\\0$(printf '%03o' "$code")"
    if [[ $s == *"$char"* ]]; then
      printf -v replacement '\\u%04x' "$code"
      s=${s//"$char"/"$replacement"}
    fi
  done
  escaped=$s
}

# Delete the private folder, then drop the Defender exclusion. In the other
# order the real-time scan could quarantine the copy on its way out, which would
# add a quarantine entry and an alert for the private folder.
cleanup() {
  if [[ -n $workdir ]]; then
    if ! rm -rf -- "$workdir"; then
      warn "could not remove the private folder $workdir"
    fi
    workdir=""
  fi
  if [[ -n $exclusion_path ]]; then
    if ! "$mdatp_bin" exclusion folder remove --path "$exclusion_path" >/dev/null 2>&1; then
      warn "could not remove the Defender folder exclusion $exclusion_path; remove it with: mdatp exclusion folder remove --path $exclusion_path"
    fi
    exclusion_path=""
  fi
}

emit_and_exit() {
  local line=$1 code=$2
  cleanup
  result_emitted=1
  printf '%s\n' "$line" >&3
  exit "$code"
}

fail() {
  local reason=$1 message
  redact "$2"
  message=$redacted
  if ((${#message} > MAX_MESSAGE_CHARS)); then
    message=${message:0:MAX_MESSAGE_CHARS}
    # The cut counts bytes, so drop the last UTF-8 character in case it split it.
    while [[ $message == *[$'\x80'-$'\xbf'] ]]; do
      message=${message%?}
    done
    if [[ $message == *[$'\xc0'-$'\xff'] ]]; then
      message=${message%?}
    fi
    message+="..."
  fi
  json_escape "$message"
  emit_and_exit "{\"status\":\"failed\",\"reason\":\"$reason\",\"message\":\"$escaped\"}" 1
}

succeed() {
  local size=$1 sha256=$2 source=$3
  emit_and_exit "{\"status\":\"uploaded\",\"size\":$size,\"sha256\":\"$sha256\",\"source\":\"$source\"}" 0
}

# Report an exit that did not go through fail or succeed: a command failing
# under set -e, or a signal.
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
  local code=$?
  if ((result_emitted)); then
    return
  fi
  if [[ -n $caught_signal ]]; then
    fail internal_error "stopped by signal $caught_signal"
  fi
  fail internal_error "unexpected error (exit code $code) at line ${failed_line:-unknown} of anyrun-upload.sh"
}

trap 'failed_line=$LINENO' ERR
trap on_exit EXIT
trap 'caught_signal=HUP; exit 129' HUP
trap 'caught_signal=INT; exit 130' INT
trap 'caught_signal=TERM; exit 143' TERM

# ---------------------------------------------------------------------------
# JSON parser for one flat object. Values may be strings, numbers, true, false
# or null; nested objects and arrays are rejected. Parsed values go to the
# associative arrays json_values and json_types.

json_text=""
json_pos=0
json_len=0
declare -A json_values=()
declare -A json_types=()

json_invalid() {
  fail bad_argument "envelope JSON is invalid at byte $json_pos: $1"
}

json_skip_whitespace() {
  while ((json_pos < json_len)); do
    case ${json_text:json_pos:1} in
      ' ' | $'\t' | $'\n' | $'\r') json_pos=$((json_pos + 1)) ;;
      *) return 0 ;;
    esac
  done
}

json_expect() {
  json_skip_whitespace
  if [[ ${json_text:json_pos:1} != "$1" ]]; then
    json_invalid "expected '$1'"
  fi
  json_pos=$((json_pos + 1))
}

# Append the UTF-8 encoding of code point $1 to the variable json_string.
json_append_code_point() {
  local cp=$1 bytes=()
  if ((cp < 0x80)); then
    bytes=("$cp")
  elif ((cp < 0x800)); then
    bytes=($((0xC0 | cp >> 6)) $((0x80 | (cp & 0x3F))))
  elif ((cp < 0x10000)); then
    bytes=($((0xE0 | cp >> 12)) $((0x80 | (cp >> 6 & 0x3F))) $((0x80 | (cp & 0x3F))))
  else
    bytes=($((0xF0 | cp >> 18)) $((0x80 | (cp >> 12 & 0x3F))) $((0x80 | (cp >> 6 & 0x3F))) $((0x80 | (cp & 0x3F))))
  fi
  local byte char
  for byte in "${bytes[@]}"; do
    printf -v char '%b' "\\0$(printf '%03o' "$byte")"
    json_string+=$char
  done
}

# Read four hex digits after "\u" at json_pos. Sets json_hex_value.
json_read_hex4() {
  local hex=${json_text:json_pos:4}
  if [[ ! $hex =~ ^[0-9A-Fa-f]{4}$ ]]; then
    json_invalid "invalid \\u escape"
  fi
  json_hex_value=$((16#$hex))
  json_pos=$((json_pos + 4))
}

# Parse the string that starts at json_pos. Sets json_string.
json_parse_string() {
  local ch cp low
  json_string=""
  json_expect '"'
  while :; do
    if ((json_pos >= json_len)); then
      json_invalid "unterminated string"
    fi
    ch=${json_text:json_pos:1}
    json_pos=$((json_pos + 1))
    case $ch in
      '"') return 0 ;;
      \\)
        ch=${json_text:json_pos:1}
        json_pos=$((json_pos + 1))
        case $ch in
          '"' | \\ | /) json_string+=$ch ;;
          b) json_string+=$'\b' ;;
          f) json_string+=$'\f' ;;
          n) json_string+=$'\n' ;;
          r) json_string+=$'\r' ;;
          t) json_string+=$'\t' ;;
          u)
            json_read_hex4
            cp=$json_hex_value
            if ((cp >= 0xD800 && cp <= 0xDBFF)); then
              if [[ ${json_text:json_pos:2} != '\u' ]]; then
                json_invalid "unpaired UTF-16 surrogate"
              fi
              json_pos=$((json_pos + 2))
              json_read_hex4
              low=$json_hex_value
              if ((low < 0xDC00 || low > 0xDFFF)); then
                json_invalid "unpaired UTF-16 surrogate"
              fi
              cp=$((0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)))
            elif ((cp >= 0xDC00 && cp <= 0xDFFF)); then
              json_invalid "unpaired UTF-16 surrogate"
            elif ((cp == 0)); then
              json_invalid "strings must not contain U+0000"
            fi
            json_append_code_point "$cp"
            ;;
          *) json_invalid "invalid escape sequence" ;;
        esac
        ;;
      [$'\x01'-$'\x1f']) json_invalid "unescaped control character in string" ;;
      *) json_string+=$ch ;;
    esac
  done
}

# Parse the value that starts at json_pos. Sets json_value and json_type.
json_parse_value() {
  local rest number_re='^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?'
  json_type=""
  json_skip_whitespace
  rest=${json_text:json_pos}
  case ${rest:0:1} in
    '"')
      json_parse_string
      json_value=$json_string
      json_type=string
      ;;
    '{' | '[') json_invalid "nested objects and arrays are not supported" ;;
    *)
      if [[ $rest == true* ]]; then
        json_type=true
      elif [[ $rest == false* ]]; then
        json_type=false
      elif [[ $rest == null* ]]; then
        json_type=null
      fi
      if [[ $json_type == true || $json_type == false || $json_type == null ]]; then
        json_value=$json_type
        json_pos=$((json_pos + ${#json_type}))
      elif [[ $rest =~ $number_re ]]; then
        json_value=${BASH_REMATCH[0]}
        json_type=number
        json_pos=$((json_pos + ${#json_value}))
      else
        json_invalid "expected a value"
      fi
      ;;
  esac
}

json_parse_object() {
  local key
  json_text=$1
  json_pos=0
  json_len=${#json_text}
  json_expect '{'
  json_skip_whitespace
  if [[ ${json_text:json_pos:1} == '}' ]]; then
    json_pos=$((json_pos + 1))
  else
    while :; do
      json_skip_whitespace
      json_parse_string
      key=$json_string
      # bash rejects an empty subscript, and no field of the envelope has one.
      if [[ -z $key ]]; then
        json_invalid "empty key"
      fi
      if [[ -n ${json_types[$key]+set} ]]; then
        json_invalid "duplicate key"
      fi
      json_expect ':'
      json_parse_value
      json_values[$key]=$json_value
      json_types[$key]=$json_type
      json_skip_whitespace
      case ${json_text:json_pos:1} in
        ',') json_pos=$((json_pos + 1)) ;;
        '}')
          json_pos=$((json_pos + 1))
          break
          ;;
        *) json_invalid "expected ',' or '}'" ;;
      esac
    done
  fi
  json_skip_whitespace
  if ((json_pos != json_len)); then
    json_invalid "unexpected data after the object"
  fi
}

# ---------------------------------------------------------------------------
# Argument

# Decode the v1 envelope in $1 into the JSON text. Sets envelope_json.
decode_envelope() {
  local envelope=$1 encoded padded nul_count decoded
  if ((${#envelope} > MAX_ENVELOPE_CHARS)); then
    fail bad_argument "argument is longer than $MAX_ENVELOPE_CHARS characters"
  fi
  if [[ $envelope =~ ^(v[0-9]{1,4})\. && ${BASH_REMATCH[1]} != v1 ]]; then
    fail bad_argument "unsupported envelope version ${BASH_REMATCH[1]}; this script reads v1"
  fi
  if [[ $envelope != v1.* ]]; then
    fail bad_argument "argument is not a v1 envelope (expected v1.<base64url JSON>)"
  fi

  encoded=${envelope#v1.}
  if [[ ! $encoded =~ ^[A-Za-z0-9_-]+$ ]] || ((${#encoded} % 4 == 1)); then
    fail bad_argument "envelope payload is not unpadded base64url"
  fi
  padded=${encoded//-/+}
  padded=${padded//_//}
  while ((${#padded} % 4 != 0)); do
    padded+="="
  done

  # A command substitution drops NUL bytes silently, so count them first.
  if ! nul_count=$(printf '%s' "$padded" | base64 -d 2>/dev/null | tr -cd '\000' | wc -c); then
    fail bad_argument "envelope payload is not valid base64url"
  fi
  if ((nul_count != 0)); then
    fail bad_argument "envelope JSON contains NUL bytes"
  fi
  # The trailing x keeps newlines at the end of the JSON, which $(...) would strip.
  if ! decoded=$(printf '%s' "$padded" | base64 -d 2>/dev/null && printf x); then
    fail bad_argument "envelope payload is not valid base64url"
  fi
  envelope_json=${decoded%x}
}

# Read string field $1 into field_value. Fails unless the field is a string or,
# when $2 is optional, absent or null.
read_string_field() {
  local name=$1 required=$2 type=${json_types[$1]-absent}
  field_value=""
  if [[ $type == string ]]; then
    field_value=${json_values[$name]}
  elif [[ $type == absent || $type == null ]]; then
    if [[ $required == required ]]; then
      fail bad_argument "envelope JSON is missing the string field \"$name\""
    fi
  else
    fail bad_argument "envelope field \"$name\" must be a string, got $type"
  fi
}

# Check the SAS URL without ever putting it into a message.
validate_url() {
  local url=$1 url_re scheme authority host port path query
  if [[ $url == *[![:graph:]]* || $url == *'"'* || $url == *\\* ]]; then
    fail bad_argument "url contains whitespace, quotes, backslashes or non-ASCII characters"
  fi
  url_re='^([a-z]+)://([^/?#]+)(/[^?#]*)\?([^#]*)$'
  if [[ ! $url =~ $url_re ]]; then
    fail bad_argument "url is not a blob SAS URL of the form https://<account>.blob.core.windows.net/<container>/<blob>?<sas>"
  fi

  scheme=${BASH_REMATCH[1]}
  authority=${BASH_REMATCH[2]}
  path=${BASH_REMATCH[3]}
  query=${BASH_REMATCH[4]}
  if [[ ! $authority =~ ^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$ ]]; then
    fail bad_argument "url has an invalid host (user info is not allowed)"
  fi
  host=${BASH_REMATCH[1],,}
  port=${BASH_REMATCH[2]}

  case $scheme in
    https) curl_protocols='=https' ;;
    http)
      if [[ $host != 127.0.0.1 && $host != localhost ]]; then
        fail bad_argument "url must use https; http is accepted only for 127.0.0.1 and localhost, not for host $host"
      fi
      curl_protocols='=http'
      ;;
    *) fail bad_argument "url scheme $scheme is not supported; use https" ;;
  esac

  if [[ ! $path =~ ^/[^/]+/.*[^/]$ ]]; then
    fail bad_argument "url path must name a container and a blob (host $host$port)"
  fi
  if [[ "&$query" != *'&sig='?* ]]; then
    fail bad_argument "url has no SAS signature (sig parameter) in its query string"
  fi
  blob_url=$url
  blob_query=$query
}

parse_argument() {
  if (($# != 1)); then
    fail bad_argument "expected exactly one argument (the v1 envelope), got $#"
  fi
  decode_envelope "$1"
  json_parse_object "$envelope_json"

  read_string_field path required
  file_path=$field_value
  if [[ $file_path != /* ]]; then
    fail bad_argument "path must be an absolute path"
  fi

  read_string_field sha256 required
  if [[ ! $field_value =~ ^[0-9A-Fa-f]{64}$ ]]; then
    fail bad_argument "sha256 must be 64 hex digits"
  fi
  expected_sha256=${field_value,,}

  read_string_field sha1 optional
  if [[ -n $field_value && ! $field_value =~ ^[0-9A-Fa-f]{40}$ ]]; then
    fail bad_argument "sha1 must be 40 hex digits"
  fi
  expected_sha1=${field_value,,}

  # Set blob_url before the check so that a failure is redacted even if it
  # quoted the URL.
  read_string_field url required
  blob_url=$field_value
  validate_url "$field_value"

  max_bytes=""
  case ${json_types[max_bytes]-absent} in
    absent | null) ;;
    number)
      if [[ ! ${json_values[max_bytes]} =~ ^(0|[1-9][0-9]{0,17})$ ]]; then
        fail bad_argument "max_bytes must be a non-negative integer below 10^18"
      fi
      max_bytes=${json_values[max_bytes]}
      ;;
    *) fail bad_argument "max_bytes must be an integer, got ${json_types[max_bytes]}" ;;
  esac
}

# ---------------------------------------------------------------------------
# Tools

find_tools() {
  if ! command -v curl >/dev/null 2>&1; then
    fail missing_dependency "curl is not installed on this host"
  fi
  if command -v sha256sum >/dev/null 2>&1; then
    hash_tool=sha256sum
  elif command -v shasum >/dev/null 2>&1; then
    hash_tool=shasum
  else
    fail missing_dependency "neither sha256sum nor shasum is installed on this host"
  fi
  if [[ -n $expected_sha1 && $hash_tool == sha256sum ]] && ! command -v sha1sum >/dev/null 2>&1; then
    fail missing_dependency "sha1sum is not installed on this host"
  fi
  mdatp_bin=$(command -v mdatp || true)
}

# Hash file $1 with SHA-$2 (256 or 1). Sets file_hash, or fails the script.
hash_file() {
  local file=$1 bits=$2 output
  if [[ $hash_tool == shasum ]]; then
    output=$(shasum -a "$bits" <"$file") || fail internal_error "cannot compute the SHA-$bits of $file"
  else
    output=$("sha${bits}sum" <"$file") || fail internal_error "cannot compute the SHA-$bits of $file"
  fi
  file_hash=${output%% *}
}

# Measure file $1 in bytes. GNU wc takes the size from fstat without reading the
# file. Sets file_size, or returns 1 when the file cannot be opened.
measure_file() {
  local output
  output=$(wc -c <"$1") || return 1
  file_size=${output//[[:space:]]/}
}

check_size() {
  local size=$1
  if [[ -n $max_bytes ]] && ((size > max_bytes)); then
    fail too_large "file is $size bytes, more than max_bytes $max_bytes"
  fi
  if ((size > MAX_BLOCKS * BLOCK_SIZE)); then
    fail too_large "file is $size bytes, more than the maximum of $MAX_BLOCKS blocks of $BLOCK_SIZE bytes"
  fi
}

# ---------------------------------------------------------------------------
# Getting the file

make_private_folder() {
  local parent=${TMPDIR:-/tmp}
  workdir=$(mktemp -d "$parent/anyrun-upload.XXXXXXXXXX") ||
    fail internal_error "cannot create a private folder in $parent"
  chmod 700 "$workdir"
  # Defender ignores exclusions that go through symbolic links, and /tmp may be one.
  workdir=$(cd "$workdir" && pwd -P)
}

# Exclude the private folder from Defender scans so that real-time protection
# does not quarantine the copy. Without mdatp there is nothing to exclude from.
add_av_exclusion() {
  if [[ -z $mdatp_bin ]]; then
    return 0
  fi
  # The trailing slash marks a folder in mdatp's documented examples.
  # NOTE: run only against tests/scripts/mdatp, never against a real mdatp.
  if "$mdatp_bin" exclusion folder add --path "$workdir/" >"$workdir/mdatp-exclusion.log" 2>&1; then
    exclusion_path="$workdir/"
  else
    warn "could not add a Defender folder exclusion for the private folder; the copy may be quarantined again"
  fi
}

# Read the last line of file $1 as printable ASCII, at most 200 characters.
# Sets last_line.
read_last_line() {
  last_line=$(tail -n 1 "$1" | tr -cd '[:print:]' | cut -c 1-200) || last_line=""
}

copy_from_disk() {
  if [[ ! -f $file_path ]]; then
    fail file_not_found "path exists but is not a regular file: $file_path"
  fi
  if ! measure_file "$file_path" 2>/dev/null; then
    fail copy_failed "cannot open $file_path"
  fi
  check_size "$file_size"
  add_av_exclusion
  copy_path="$workdir/file"
  if ! cp -- "$file_path" "$copy_path" 2>"$workdir/cp.log"; then
    read_last_line "$workdir/cp.log"
    fail copy_failed "cannot copy $file_path: $last_line"
  fi
  file_source=disk
}

# Restore the file into $workdir/restore and pick the restored file whose
# SHA-256 matches, because the restore may bring back more than one file and
# may name it differently.
restore_from_quarantine() {
  local restore_dir="$workdir/restore" candidate first_hash="" found=""
  if [[ -z $mdatp_bin ]]; then
    fail file_not_found "file not found on disk: $file_path; quarantine restore is unavailable because mdatp is not on PATH"
  fi
  add_av_exclusion
  mkdir "$restore_dir"
  if ! "$mdatp_bin" threat quarantine restore threat-path --path "$file_path" --destination-path "$restore_dir" >"$workdir/mdatp-restore.log" 2>&1; then
    read_last_line "$workdir/mdatp-restore.log"
    fail restore_failed "file not found on disk, and mdatp could not restore $file_path from quarantine: $last_line"
  fi
  while IFS= read -r -d '' candidate; do
    hash_file "$candidate" 256
    if [[ -z $first_hash ]]; then
      first_hash=$file_hash
    fi
    if [[ $file_hash == "$expected_sha256" ]]; then
      found=$candidate
      break
    fi
  done < <(find "$restore_dir" -type f -print0)
  if [[ -n $found ]]; then
    copy_path=$found
  elif [[ -n $first_hash ]]; then
    fail hash_mismatch "no file restored from quarantine has SHA-256 $expected_sha256 (restored file: $first_hash)"
  else
    fail restore_failed "mdatp reported success but no file appeared in the restore folder for $file_path"
  fi
  file_source=quarantine
}

verify_copy() {
  measure_file "$copy_path" || fail internal_error "cannot open the copy of $file_path"
  check_size "$file_size"
  hash_file "$copy_path" 256
  if [[ $file_hash != "$expected_sha256" ]]; then
    fail hash_mismatch "SHA-256 of $file_path is $file_hash, expected $expected_sha256"
  fi
  if [[ -n $expected_sha1 ]]; then
    hash_file "$copy_path" 1
    if [[ $file_hash != "$expected_sha1" ]]; then
      fail hash_mismatch "SHA-1 of $file_path is $file_hash, expected $expected_sha1"
    fi
  fi
}

# ---------------------------------------------------------------------------
# Upload

curl_error_text() {
  case $1 in
    6) printf 'could not resolve the storage host' ;;
    7) printf 'could not connect to the storage host' ;;
    28) printf 'the request timed out' ;;
    35 | 60) printf 'TLS handshake or certificate check failed' ;;
    52 | 55 | 56) printf 'the connection failed while sending or receiving' ;;
    *) printf 'curl failed' ;;
  esac
}

# PUT file $2 to the blob URL with query suffix $1. Further arguments are curl
# options (headers). Fails the script unless the response status is 201.
# curl tries again after 1, 2, 4 and 8 s when the connection is refused or
# times out, or on 408, 429, 500, 502, 503 and 504, within the time budget. A
# repeated PUT of the same blob or block with the same bytes is harmless.
put_to_blob() {
  local suffix=$1 body=$2 operation=$3 remaining max_time status curl_code error_code
  shift 3
  remaining=$((deadline - SECONDS))
  if ((remaining <= 0)); then
    fail upload_failed "time budget of $time_budget_seconds s ran out during the upload ($operation)"
  fi
  max_time=$((remaining < REQUEST_TIMEOUT_SECONDS ? remaining : REQUEST_TIMEOUT_SECONDS))
  # -q must come first: it stops curl from reading ~/.curlrc, which could turn
  # on verbose output of the URL. The config on stdin carries only the URL.
  curl_code=0
  status=$(printf 'url = "%s%s"\n' "$blob_url" "$suffix" |
    curl -q --config - --silent --show-error --globoff \
      --proto "$curl_protocols" --max-redirs 0 \
      --connect-timeout 30 --max-time "$max_time" \
      --retry 4 --retry-connrefused --retry-max-time "$max_time" \
      --upload-file "$body" --request PUT \
      --header "x-ms-version: $STORAGE_API_VERSION" \
      "$@" \
      --output "$workdir/response.xml" --write-out '%{http_code}' \
      2>"$workdir/curl.log") || curl_code=$?
  if ((curl_code != 0)); then
    fail upload_failed "$operation failed: $(curl_error_text "$curl_code") (curl exit code $curl_code)"
  fi
  if [[ $status != 201 ]]; then
    # Only the <Code> element is reported: an authentication error's details
    # can quote the signature.
    error_code=$(sed -n 's:.*<Code>\([A-Za-z0-9]*\)</Code>.*:\1:p' "$workdir/response.xml" 2>/dev/null | head -n 1 || true)
    fail upload_failed "$operation returned HTTP $status${error_code:+ ($error_code)}"
  fi
}

upload_single() {
  put_to_blob "" "$copy_path" "Put Blob" \
    --header "x-ms-blob-type: BlockBlob" \
    --header "Content-Type: application/octet-stream"
}

# Upload the copy ($1 bytes) as blocks, then commit them.
upload_blocks() {
  local total=$1
  local block_count=$(((total + BLOCK_SIZE - 1) / BLOCK_SIZE))
  local chunk="$workdir/block" list="$workdir/blocklist.xml" index block_id expected
  printf '<?xml version="1.0" encoding="utf-8"?><BlockList>' >"$list"
  for ((index = 0; index < block_count; index++)); do
    # Block ids must all have the same length. The base64 of this 12-character
    # ASCII text is 16 characters of [A-Za-z0-9] only, so it needs no escaping
    # in the query string.
    block_id=$(printf 'block-%06d' "$index" | base64)
    if ! dd if="$copy_path" of="$chunk" bs="$BLOCK_SIZE" skip="$index" count=1 2>"$workdir/dd.log"; then
      read_last_line "$workdir/dd.log"
      fail internal_error "cannot read block $index of the copy: $last_line"
    fi
    expected=$((index < block_count - 1 ? BLOCK_SIZE : total - index * BLOCK_SIZE))
    measure_file "$chunk" || fail internal_error "cannot open block $index of the copy"
    if ((file_size != expected)); then
      fail internal_error "block $index of the copy has $file_size bytes, expected $expected"
    fi
    put_to_blob "&comp=block&blockid=$block_id" "$chunk" "Put Block $((index + 1))/$block_count"
    printf '<Latest>%s</Latest>' "$block_id" >>"$list"
  done
  rm -f -- "$chunk"
  printf '</BlockList>\n' >>"$list"
  put_to_blob "&comp=blocklist" "$list" "Put Block List" \
    --header "Content-Type: application/xml" \
    --header "x-ms-blob-content-type: application/octet-stream"
}

# ---------------------------------------------------------------------------

main() {
  parse_argument "$@"
  find_tools
  make_private_folder
  if [[ -e $file_path ]]; then
    copy_from_disk
  else
    restore_from_quarantine
  fi
  verify_copy
  local size=$file_size
  if ((size <= BLOCK_SIZE)); then
    upload_single
  else
    upload_blocks "$size"
  fi
  succeed "$size" "$expected_sha256" "$file_source"
}

main "$@"
