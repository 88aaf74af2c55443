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

# Usage: k3s_ha_start_service UNIT [TIMEOUT_SECONDS]
# Enables UNIT and restarts it only when that changes something: a new config, a stopped
# or failed unit, or a replaced binary. A restart of a healthy server costs an etcd
# leader election, so a re-run with nothing new must leave it alone.
# k3s units are Type=notify with TimeoutStartSec=0: `systemctl restart` blocks until k3s
# is up, and forever if a join hangs, hence the bound (default 600 s).
k3s_ha_start_service() {
  local unit=$1 timeout=${2:-600} reason="" status=0
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
  # timeout must be at least 1: `timeout 0` means no limit.
  timeout "$((timeout > 0 ? timeout : 1))" systemctl restart "$unit" || status=$?
  if ((status == 124)); then
    k3s_ha_die "$unit did not finish starting within ${timeout}s; see journalctl -u $unit"
  elif ((status != 0)); then
    k3s_ha_die "systemctl restart $unit failed (exit $status); see journalctl -u $unit"
  fi
}
