# shellcheck shell=bash
# Shared helpers for the k3s-ha node scripts.
#
# scripts.py sends this file followed by one role script as a single `bash -c` text, and
# the role scripts source it when run by hand, so it must only define functions: anything
# it did at top level would run before every role script.
#
# Secrets (tokens, config.yaml, the kubeconfig) arrive on stdin and must never reach
# stdout, stderr or a command line: Pulumi keeps command output in its state and logs,
# and command lines are visible to every user through `ps`.
set -euo pipefail

k3s_ha_log() {
  printf 'k3s-ha: %s\n' "$*" >&2
}

k3s_ha_die() {
  k3s_ha_log "error: $*"
  exit 1
}

k3s_ha_warn() {
  k3s_ha_log "warning: $*"
}

# For steps that run while something is being destroyed, where a failure would block the
# destroy: from here on the script exits 0 whatever happens, and an early stop (an
# unexpected failure under set -e, or k3s_ha_die) is logged as a warning.
k3s_ha_never_fail() {
  trap k3s_ha_exit_zero EXIT
}

k3s_ha_exit_zero() {
  local status=$?
  if ((status != 0)); then
    k3s_ha_warn "stopped early (exit $status); reporting success anyway so that the destroy goes on"
  fi
  exit 0
}

# Fails unless the named parameter is set and not empty.
k3s_ha_require_param() {
  local name=$1
  if [[ -z ${!name:-} ]]; then
    k3s_ha_die "parameter $name is required but not set"
  fi
}

# Fails unless the named parameter is a whole number of seconds.
k3s_ha_require_seconds() {
  local name=$1
  if [[ ! ${!name:-} =~ ^[0-9]+$ ]]; then
    k3s_ha_die "parameter $name must be a whole number of seconds, got '${!name:-}'"
  fi
}

# Overridable so that tests never touch /etc.
k3s_ha_config_dir() {
  printf '%s\n' "${K3S_HA_CONFIG_DIR:-/etc/rancher/k3s}"
}

# The K3s data dir: K3S_HA_DATA_DIR (for tests and odd layouts), else the config's
# data-dir (once k3s_ha_config_from_* loaded it), else the K3s default.
k3s_ha_data_dir() {
  local from_config=""
  if [[ -n ${K3S_HA_DATA_DIR:-} ]]; then
    printf '%s\n' "$K3S_HA_DATA_DIR"
    return
  fi
  if [[ -n ${K3S_HA_CONFIG:-} ]]; then
    from_config=$(k3s_ha_config_value data-dir) || from_config=""
  fi
  printf '%s\n' "${from_config:-/var/lib/rancher/k3s}"
}

# Succeeds once this server has embedded etcd data: from then on K3s ignores cluster-init
# and rejoins its own cluster from that data.
k3s_ha_has_etcd_data() {
  [[ -e "$(k3s_ha_data_dir)/server/db/etcd" ]]
}

# The path the installer puts k3s at. A fixed path rather than a PATH lookup, so that the
# version check sees the binary the systemd unit runs.
k3s_ha_k3s_bin() {
  printf '%s/k3s\n' "${K3S_HA_BIN_DIR:-/usr/local/bin}"
}

# The name k3s registers the node under when config.yaml sets no node-name: k3s
# lower-cases the host name because Kubernetes node names must be lower case.
k3s_ha_node_name() {
  if [[ -n ${K3S_HA_NODE_NAME:-} ]]; then
    printf '%s\n' "$K3S_HA_NODE_NAME"
    return
  fi
  local name
  # Minimal images may lack the hostname binary; uname -n reads the same kernel name.
  if command -v hostname >/dev/null 2>&1; then
    name=$(hostname) || k3s_ha_die "could not read the host name"
  else
    name=$(uname -n) || k3s_ha_die "could not read the host name"
  fi
  printf '%s\n' "${name,,}"
}

# Usage: k3s_ha_write_config PATH  (content on stdin)
# Replaces PATH atomically with mode 0600, because k3s may read config.yaml at any moment
# and the file holds the cluster token. Sets K3S_HA_CONFIG_CHANGED to 1 when the content
# differs from what was there before, 0 otherwise, so callers restart only when needed.
k3s_ha_write_config() {
  local path=$1 dir tmp
  dir=$(dirname -- "$path")
  if [[ ! -d $dir ]]; then
    (umask 022 && mkdir -p -- "$dir") || k3s_ha_die "could not create $dir"
  fi
  # Same directory as the target, so the final mv is a rename and never a copy.
  tmp=$(umask 077 && mktemp "$dir/.$(basename -- "$path").XXXXXX") \
    || k3s_ha_die "could not create a temporary file in $dir"
  if ! (umask 077 && cat >"$tmp"); then
    rm -f -- "$tmp"
    k3s_ha_die "could not write $path from stdin"
  fi
  # An empty file would make k3s start with defaults, e.g. a fresh single-node cluster
  # instead of a join, which is far worse than failing here.
  if ! grep -q '[^[:space:]]' "$tmp"; then
    rm -f -- "$tmp"
    k3s_ha_die "refusing to write an empty $path: its content must arrive on stdin"
  fi
  if ! chmod 600 -- "$tmp"; then
    rm -f -- "$tmp"
    k3s_ha_die "could not set mode 0600 on a temporary file in $dir"
  fi
  # sha256sum rather than cmp: coreutils is on every node, diffutils is not.
  if [[ -f $path && $(sha256sum <"$tmp") == "$(sha256sum <"$path")" ]]; then
    K3S_HA_CONFIG_CHANGED=0
  else
    K3S_HA_CONFIG_CHANGED=1
  fi
  # Replace even when unchanged: this also repairs a too-open mode on the old file.
  if ! mv -f -- "$tmp" "$path"; then
    rm -f -- "$tmp"
    k3s_ha_die "could not replace $path"
  fi
  if [[ $K3S_HA_CONFIG_CHANGED == 1 ]]; then
    k3s_ha_log "wrote $path (changed)"
  else
    k3s_ha_log "$path is unchanged"
  fi
}

# Usage: k3s_ha_wait_until DESCRIPTION TIMEOUT_SECONDS CHECK_FUNCTION [HINT]
# Calls CHECK_FUNCTION (at least once) every K3S_HA_POLL_SECONDS until it succeeds or
# TIMEOUT_SECONDS have passed, counted from K3S_HA_STARTED_AT (epoch seconds) if the role
# script set it, else from now: that way one K3S_READY_TIMEOUT bounds restart and wait
# together, and Pulumi's own timeout (set above it) never fires first. CHECK_FUNCTION runs in an `if`, where `set -e` is off, so it
# must return its result explicitly. It may put what it saw in K3S_HA_WAIT_STATUS: that is
# logged whenever it changes and quoted in the timeout error, so a failed run says what
# was missing rather than just "timed out".
k3s_ha_wait_until() {
  local description=$1 timeout=$2 check=$3 hint=${4:-}
  local poll=${K3S_HA_POLL_SECONDS:-5} deadline last_status="" message
  if [[ ! $timeout =~ ^[0-9]+$ ]]; then
    k3s_ha_die "timeout for '$description' must be a whole number of seconds, got '$timeout'"
  fi
  if [[ ! $poll =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    k3s_ha_die "K3S_HA_POLL_SECONDS must be a number of seconds, got '$poll'"
  fi
  deadline=$((${K3S_HA_STARTED_AT:-$(date +%s)} + timeout))
  K3S_HA_WAIT_STATUS=""
  while true; do
    if "$check"; then
      k3s_ha_log "done waiting for $description"
      return 0
    fi
    if [[ -n $K3S_HA_WAIT_STATUS && $K3S_HA_WAIT_STATUS != "$last_status" ]]; then
      k3s_ha_log "waiting for $description: $K3S_HA_WAIT_STATUS"
      last_status=$K3S_HA_WAIT_STATUS
    fi
    if (($(date +%s) >= deadline)); then
      message="timed out after ${timeout}s waiting for $description"
      if [[ -n $K3S_HA_WAIT_STATUS ]]; then
        message+=": $K3S_HA_WAIT_STATUS"
      fi
      if [[ -n $hint ]]; then
        message+="; $hint"
      fi
      k3s_ha_die "$message"
    fi
    sleep "$poll"
  done
}

# Prints the version the installed k3s binary reports, or nothing if there is none.
k3s_ha_installed_version() {
  local bin line _ version=""
  bin=$(k3s_ha_k3s_bin)
  if [[ -x $bin ]] && line=$("$bin" --version 2>/dev/null); then
    # First line: "k3s version v1.36.4+k3s1 (abcdef01)"
    read -r _ _ version _ <<<"$line" || true
  fi
  printf '%s\n' "$version"
}

# Usage: k3s_ha_require_installed_version VERSION
# Lets a start script refuse to (re)start k3s on a binary other than the pinned one, e.g.
# when install-k3s.sh did not run or failed on this node.
k3s_ha_require_installed_version() {
  local wanted=$1 installed
  installed=$(k3s_ha_installed_version)
  if [[ $installed != "$wanted" ]]; then
    k3s_ha_die "$(k3s_ha_k3s_bin) reports version '${installed:-none}', expected $wanted; run install-k3s.sh first"
  fi
}

# Succeeds when the unit's running process was started from a binary that has since been
# replaced on disk. The installer runs with INSTALL_K3S_SKIP_START and moves the new binary
# over the old one, so after an upgrade the kernel shows the old executable as deleted;
# without this check an upgrade with an unchanged config would never take effect.
k3s_ha_binary_replaced() {
  local unit=$1 pid exe
  pid=$(systemctl show --property=MainPID --value "$unit" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $pid != 0 ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $exe == *" (deleted)" ]]
}

# Usage: k3s_ha_time_left TIMEOUT_SECONDS
# Prints how much of TIMEOUT_SECONDS is left, counted from K3S_HA_STARTED_AT like
# k3s_ha_wait_until does (the whole of it when that is unset), and at least 1, because
# `timeout 0` means no limit at all.
k3s_ha_time_left() {
  local left=$1
  if [[ -n ${K3S_HA_STARTED_AT:-} ]]; then
    left=$((K3S_HA_STARTED_AT + $1 - $(date +%s)))
  fi
  printf '%s\n' "$((left > 0 ? left : 1))"
}

# Usage: k3s_ha_systemctl_bounded VERB UNIT TIMEOUT_SECONDS
# Runs `systemctl VERB UNIT` (start, restart, stop) within what is left of TIMEOUT_SECONDS.
# k3s units are Type=notify with TimeoutStartSec=0: start and restart block until k3s is
# up, and forever if a join hangs.
k3s_ha_systemctl_bounded() {
  local verb=$1 unit=$2 timeout=$3 doing=starting status=0
  if [[ $verb == stop ]]; then
    doing=stopping
  fi
  timeout "$(k3s_ha_time_left "$timeout")" systemctl "$verb" "$unit" || status=$?
  if ((status == 124)); then
    k3s_ha_die "$unit did not finish $doing within ${timeout}s; see journalctl -u $unit"
  elif ((status != 0)); then
    k3s_ha_die "systemctl $verb $unit failed (exit $status); see journalctl -u $unit"
  fi
}

# Usage: k3s_ha_begin_start
# How start-server.sh and start-agent.sh begin: stdout is kept for the node name alone
# (moved to fd 3; everything else goes to stderr), the K3S_READY_TIMEOUT budget starts
# now, and the installed binary must be the wanted K3S_VERSION when one is given.
k3s_ha_begin_start() {
  exec 3>&1 1>&2
  K3S_HA_STARTED_AT=$(date +%s)
  K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
  k3s_ha_require_seconds K3S_READY_TIMEOUT
  if [[ -n ${K3S_VERSION:-} ]]; then
    k3s_ha_require_installed_version "$K3S_VERSION"
  fi
}

# Usage: k3s_ha_start_service UNIT [TIMEOUT_SECONDS]
# Enables UNIT and restarts it only when that changes something: a new config, a stopped
# or failed unit, or a replaced binary. A restart of a healthy server costs an etcd
# leader election, so a re-run with nothing new must leave it alone. The restart gets
# what is left of TIMEOUT_SECONDS (default 600).
k3s_ha_start_service() {
  local unit=$1 timeout=${2:-600} reason=""
  if [[ ! $timeout =~ ^[0-9]+$ ]]; then
    k3s_ha_die "timeout for starting $unit must be a whole number of seconds, got '$timeout'"
  fi
  systemctl enable "$unit" || k3s_ha_die "systemctl enable $unit failed; is K3s installed on this node?"
  if [[ ${K3S_HA_CONFIG_CHANGED:-0} == 1 ]]; then
    reason="its config changed"
  elif ! systemctl is-active --quiet "$unit"; then
    reason="it is not running"
  elif k3s_ha_binary_replaced "$unit"; then
    reason="its binary was replaced (upgrade)"
  fi
  if [[ -z $reason ]]; then
    k3s_ha_log "$unit is already running with this config; not restarting"
    return 0
  fi
  k3s_ha_log "restarting $unit because $reason"
  k3s_ha_systemctl_bounded restart "$unit" "$timeout"
}

# --- readiness -----------------------------------------------------------------------

# A value for a log or timeout message: the first line of what a command said, kept short.
k3s_ha_brief() {
  local text=${1%%$'\n'*}
  if [[ -z $text ]]; then
    text="<empty>"
  fi
  printf '%s\n' "${text:0:160}"
}

# Succeeds when NAME can be a Kubernetes node name (also keeps it from reading as a flag).
k3s_ha_is_node_name() {
  [[ $1 =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]]
}

# Usage: k3s_ha_node_condition NODE TYPE
# Prints the status (True, False, Unknown) of condition TYPE of NODE as the local API sees
# it, or "error: <what kubectl said>".
k3s_ha_node_condition() {
  local node=$1 type=$2 out
  if out=$("$(k3s_ha_k3s_bin)" kubectl get node "$node" --request-timeout=10s \
    -o "jsonpath={.status.conditions[?(@.type==\"$type\")].status}" 2>&1); then
    k3s_ha_brief "$out"
  else
    k3s_ha_brief "error: $out"
  fi
}

# Wait check: node K3S_HA_WAIT_NODE is Ready.
k3s_ha_node_ready() {
  local ready
  ready=$(k3s_ha_node_condition "$K3S_HA_WAIT_NODE" Ready)
  if [[ $ready == True ]]; then
    return 0
  fi
  K3S_HA_WAIT_STATUS="Ready (last seen: $ready)"
  return 1
}

# Wait check: server K3S_HA_WAIT_NODE is a full member. Ready alone is not enough: a
# joining server is Ready while etcd still holds it as a learner, and the next server's
# join fails if it starts before this one is promoted.
k3s_ha_server_ready() {
  local readyz ready voter unmet=() item joined=""
  if readyz=$("$(k3s_ha_k3s_bin)" kubectl get --raw=/readyz --request-timeout=10s 2>&1); then
    readyz=$(k3s_ha_brief "$readyz")
  else
    readyz=$(k3s_ha_brief "error: $readyz")
  fi
  ready=$(k3s_ha_node_condition "$K3S_HA_WAIT_NODE" Ready)
  voter=$(k3s_ha_node_condition "$K3S_HA_WAIT_NODE" EtcdIsVoter)
  [[ $readyz == ok ]] || unmet+=("readyz (last seen: $readyz)")
  [[ $ready == True ]] || unmet+=("Ready (last seen: $ready)")
  [[ $voter == True ]] || unmet+=("EtcdIsVoter (last seen: $voter)")
  if ((${#unmet[@]} == 0)); then
    return 0
  fi
  for item in "${unmet[@]}"; do
    joined+="${joined:+; }$item"
  done
  K3S_HA_WAIT_STATUS="not yet satisfied: $joined"
  return 1
}

# Usage: k3s_ha_wait_server_ready NODE TIMEOUT_SECONDS
# Waits until the local server NODE answers /readyz with ok, is Ready and an etcd voter.
k3s_ha_wait_server_ready() {
  K3S_HA_WAIT_NODE=$1
  k3s_ha_wait_until "k3s server $1 to be ready (readyz ok, Ready=True, EtcdIsVoter=True)" \
    "$2" k3s_ha_server_ready "see journalctl -u k3s"
}

# --- other servers -------------------------------------------------------------------

# Usage: k3s_ha_peer_url ADDRESS
# Prints https://ADDRESS:6443 (IPv6 in brackets); fails unless ADDRESS is a host name or
# an IP address, so that nothing else ends up in a URL or in config.yaml.
k3s_ha_peer_url() {
  local address=$1
  if [[ $address =~ ^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]]; then
    printf 'https://%s:6443\n' "$address"
  elif [[ $address =~ ^\[?([0-9A-Fa-f]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)\]?$ ]]; then
    printf 'https://[%s]:6443\n' "${BASH_REMATCH[1]}"
  else
    return 1
  fi
}

# Usage: k3s_ha_ping URL   (https://HOST:PORT)
# Succeeds when URL/ping answers "pong", the unauthenticated probe of the k3s supervisor.
# -k because this only asks whether a k3s server is there; nothing it says is trusted.
# Leaves what it saw in K3S_HA_PING_RESULT for messages.
k3s_ha_ping() {
  local body status=0
  body=$(curl -ksf --max-time 5 "${1%/}/ping" 2>/dev/null) || status=$?
  if ((status != 0)); then
    K3S_HA_PING_RESULT="no answer (curl exit $status)"
    return 1
  fi
  if [[ $body != pong ]]; then
    K3S_HA_PING_RESULT="answered '$(k3s_ha_brief "$body")' instead of pong"
    return 1
  fi
  K3S_HA_PING_RESULT=pong
}

# Wait check: K3S_HA_WAIT_URL answers /ping.
k3s_ha_ping_answers() {
  if k3s_ha_ping "$K3S_HA_WAIT_URL"; then
    return 0
  fi
  K3S_HA_WAIT_STATUS=$K3S_HA_PING_RESULT
  return 1
}

# Usage: k3s_ha_wait_for_ping URL TIMEOUT_SECONDS
k3s_ha_wait_for_ping() {
  K3S_HA_WAIT_URL=$1
  k3s_ha_wait_until "$1 to answer /ping" "$2" k3s_ha_ping_answers \
    "the server there must be running, and a load balancer in front must have marked it healthy"
}

# --- config.yaml edits ---------------------------------------------------------------
# The config text lives in K3S_HA_CONFIG, in memory: it holds the token, so it is only
# ever passed to bash functions and builtins, never to a command line or an output.

# Loads config.yaml from stdin into K3S_HA_CONFIG, byte for byte.
k3s_ha_config_from_stdin() {
  K3S_HA_CONFIG=""
  if IFS= read -r -d '' K3S_HA_CONFIG; then
    k3s_ha_die "the config.yaml on stdin contains a NUL byte"
  fi
}

# Usage: k3s_ha_config_from_file FILE
# Loads FILE into K3S_HA_CONFIG, byte for byte.
k3s_ha_config_from_file() {
  K3S_HA_CONFIG=""
  [[ -r $1 ]] || k3s_ha_die "cannot read $1"
  if IFS= read -r -d '' K3S_HA_CONFIG <"$1"; then
    k3s_ha_die "$1 contains a NUL byte; it cannot be a config.yaml"
  fi
}

# Usage: k3s_ha_config_save PATH
# Writes K3S_HA_CONFIG to PATH like k3s_ha_write_config (atomic, 0600, sets
# K3S_HA_CONFIG_CHANGED, refuses empty content).
k3s_ha_config_save() {
  k3s_ha_write_config "$1" < <(printf '%s' "$K3S_HA_CONFIG")
}

# --- registries.yaml ------------------------------------------------------------------
# A start script's stdin may carry a second document: config.yaml, then the line
# "--- # k3s-ha: registries.yaml follows", then /etc/rancher/k3s/registries.yaml (which may
# hold registry passwords, so it travels on stdin like the token). bootstrap/node_config.py
# writes that line; a rendered config.yaml never has a line starting with "---".

# After k3s_ha_config_from_stdin: moves the registries.yaml part out of K3S_HA_CONFIG into
# K3S_HA_REGISTRIES and sets K3S_HA_HAS_REGISTRIES to 1, or to 0 when stdin had none.
k3s_ha_config_split_registries() {
  local separator=$'\n--- # k3s-ha: registries.yaml follows\n'
  K3S_HA_REGISTRIES=""
  K3S_HA_HAS_REGISTRIES=0
  if [[ $K3S_HA_CONFIG == *"$separator"* ]]; then
    K3S_HA_REGISTRIES=${K3S_HA_CONFIG#*"$separator"}
    K3S_HA_CONFIG=${K3S_HA_CONFIG%%"$separator"*}$'\n'
    K3S_HA_HAS_REGISTRIES=1
  fi
}

# Usage: k3s_ha_registries_save PATH
# After k3s_ha_config_save: writes K3S_HA_REGISTRIES to PATH like config.yaml (atomic, 0600)
# when stdin carried one; otherwise removes PATH if k3s-ha wrote it (its first line is the
# header node_config.py puts there) and leaves a file written by hand alone. K3s reads the
# file only when it starts, so K3S_HA_CONFIG_CHANGED ends up 1 when either file changed.
k3s_ha_registries_save() {
  local path=$1 config_changed=${K3S_HA_CONFIG_CHANGED:-0} first=""
  if ((${K3S_HA_HAS_REGISTRIES:-0})); then
    k3s_ha_write_config "$path" < <(printf '%s' "$K3S_HA_REGISTRIES")
  else
    K3S_HA_CONFIG_CHANGED=0
    if [[ -f $path ]]; then
      IFS= read -r first <"$path" || true
    fi
    if [[ $first == "# Written by k3s-ha from the registries input;"* ]]; then
      rm -f -- "$path" || k3s_ha_die "could not remove $path"
      k3s_ha_log "removed $path (no registries given any more)"
      K3S_HA_CONFIG_CHANGED=1
    fi
  fi
  if ((config_changed)); then
    K3S_HA_CONFIG_CHANGED=1
  fi
}

# Usage: k3s_ha_config_value KEY
# Prints the value of top-level scalar KEY (quotes and a trailing comment removed); fails
# when the key is absent. Never use it on a secret outside a variable assignment.
k3s_ha_config_value() {
  local pattern="^$1:([[:space:]]+(.*))?\$" line value lines=()
  mapfile -t lines < <(printf '%s' "${K3S_HA_CONFIG:-}")
  for line in "${lines[@]}"; do
    line=${line%$'\r'}
    if [[ $line =~ $pattern ]]; then
      value=${BASH_REMATCH[2]}
      if [[ $value =~ ^\"([^\"]*)\" || $value =~ ^\'([^\']*)\' ]]; then
        value=${BASH_REMATCH[1]}
      else
        value=${value%%[[:space:]]#*}
        value=${value%"${value##*[![:space:]]}"}
      fi
      printf '%s\n' "$value"
      return 0
    fi
  done
  return 1
}

# Usage: k3s_ha_config_is_true KEY
# Succeeds when config.yaml sets top-level KEY to true.
k3s_ha_config_is_true() {
  local value
  value=$(k3s_ha_config_value "$1") || return 1
  [[ $value == true || $value == True || $value == TRUE ]]
}

# Prints the config's `server:` URL (https://ADDR:6443) without a trailing slash, or
# nothing when there is none. Fails when it is not an https URL.
k3s_ha_config_server_url() {
  local url
  url=$(k3s_ha_config_value server) || return 0
  if [[ ! $url =~ ^https://[^[:space:]/]+/?$ ]]; then
    k3s_ha_die "config.yaml has server: '$url', expected https://ADDRESS:6443"
  fi
  printf '%s\n' "${url%/}"
}

# Usage: k3s_ha_config_join URL
# Turns the config of a would-be first server into one that joins URL: the cluster-init
# line gives way to `server: URL`; every other line (token included) stays as it was.
k3s_ha_config_join() {
  local url=$1 line text="" replaced=0 lines=()
  mapfile -t lines < <(printf '%s' "$K3S_HA_CONFIG")
  for line in "${lines[@]}"; do
    if [[ $line =~ ^cluster-init: ]]; then
      if ((replaced == 0)); then
        text+="server: $url"$'\n'
        replaced=1
      fi
      continue
    fi
    text+="$line"$'\n'
  done
  if ((replaced == 0)); then
    text+="server: $url"$'\n'
  fi
  K3S_HA_CONFIG=$text
}

# Usage: k3s_ha_config_join_a_peer [ADDRESS...]
# Probes each address; on the first that answers /ping, rewrites K3S_HA_CONFIG to join it
# and succeeds. Fails when none answers. A server with cluster-init on a fresh disk would
# otherwise start a second, separate cluster next to the running one (k3s-ansible#269).
k3s_ha_config_join_a_peer() {
  local address url
  for address in "$@"; do
    url=$(k3s_ha_peer_url "$address") \
      || k3s_ha_die "peer address '$address' is not a host name or IP address"
    if k3s_ha_ping "$url"; then
      k3s_ha_log "a cluster already answers at $address: joining it instead of starting a second cluster (k3s-ansible#269)"
      k3s_ha_config_join "$url"
      return 0
    fi
    k3s_ha_log "peer $address: $K3S_HA_PING_RESULT"
  done
  return 1
}

# --- versions ------------------------------------------------------------------------

# Usage: k3s_ha_version_fields TAG
# Prints "MAJOR MINOR PATCH K3S RC" for a K3s release tag (v1.36.4+k3s1, v1.30.0-rc1+k3s1,
# v1.17.0+k3s.1, v1.0.1): a missing +k3sN counts as 0, and a release as RC 999999999, after
# its release candidates. Fails for anything else.
k3s_ha_version_fields() {
  local pattern='^v([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(-rc([0-9]{1,9}))?(\+k3s\.?([0-9]{1,9}))?$'
  [[ $1 =~ $pattern ]] || return 1
  printf '%d %d %d %d %d\n' "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))" \
    "$((10#${BASH_REMATCH[3]}))" "$((10#${BASH_REMATCH[7]:-0}))" "$((10#${BASH_REMATCH[5]:-999999999}))"
}

# Usage: k3s_ha_version_key TAG
# Prints a fixed-width key: comparing two keys as strings compares the releases (major,
# minor, patch, then k3s revision, then release candidate). Fails unless TAG is a tag.
k3s_ha_version_key() {
  local fields
  fields=$(k3s_ha_version_fields "$1") || return 1
  local -a f
  read -r -a f <<<"$fields"
  printf '%09d%09d%09d%09d%09d\n' "${f[@]}"
}

# Usage: k3s_ha_check_upgrade FROM TO
# Returns 0 when a node (or cluster) on K3s FROM may move to TO: FROM empty (nothing
# installed), the same tag, or an upgrade K3s supports. Dies, naming both versions and
# the way out, on a downgrade, a skipped minor version (docs/upgrades/manual.md), or a
# move from the Dqlite era (before v1.19.1) to embedded etcd.
k3s_ha_check_upgrade() {
  local from=$1 to=$2 from_key to_key dqlite_end
  local -a f t
  if [[ -z $from || $from == "$to" ]]; then
    return 0
  fi
  from_key=$(k3s_ha_version_key "$from") \
    || k3s_ha_die "cannot check the move from k3s '$from' to $to: '$from' is not a K3s release tag"
  to_key=$(k3s_ha_version_key "$to") \
    || k3s_ha_die "cannot check the move from k3s $from to '$to': '$to' is not a K3s release tag"
  read -r -a f <<<"$(k3s_ha_version_fields "$from")"
  read -r -a t <<<"$(k3s_ha_version_fields "$to")"
  if [[ $to_key < "$from_key" ]]; then
    k3s_ha_die "refusing to downgrade k3s from $from to $to: K3s does not support downgrades (docs/upgrades/manual.md); set the version to $from or newer"
  fi
  dqlite_end=$(k3s_ha_version_key v1.19.1)
  if [[ ${from_key:0:27} < "${dqlite_end:0:27}" && ! ${to_key:0:27} < "${dqlite_end:0:27}" ]]; then
    k3s_ha_die "refusing to upgrade k3s from $from to $to: $from keeps HA data in embedded Dqlite, $to in embedded etcd: data would be lost; no supported upgrade path from Dqlite to etcd. Stay below v1.19.1, or build a new cluster on $to and move the workloads to it"
  fi
  if ((t[0] == f[0] && t[1] > f[1] + 1)); then
    k3s_ha_die "refusing to upgrade k3s from $from to $to: upgrade one minor at a time: $from -> v${f[0]}.$((f[1] + 1)) first (its latest patch release), then on towards $to (docs/upgrades/manual.md)"
  fi
  return 0
}
