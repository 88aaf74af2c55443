# shellcheck shell=bash
# lib.sh part: this node's K3s: its binary, staged releases, its unit and starting it.

# Usage: k3s_ha_enable_again UNIT
# For k3s_ha_at_exit: enables UNIT again after the installer disabled it.
k3s_ha_enable_again() {
  if systemctl enable "$1" >/dev/null 2>&1; then
    k3s_ha_log "enabled $1 again, as it was before the installer ran"
  else
    k3s_ha_warn "could not enable $1 again: run systemctl enable $1, or a reboot leaves this node without K3s"
  fi
}

# Usage: k3s_ha_put_back_unit COPY_DIR UNIT_PATH
# Restores a unit file and its env file kept in COPY_DIR (install-k3s.sh, staging) and has
# systemd read them again.
k3s_ha_put_back_unit() {
  local copy=$1 unit=$2 file
  for file in "$copy"/*; do
    [[ -e $file ]] || continue
    cp -p -- "$file" "${unit%/*}/${file##*/}" || k3s_ha_warn "could not put $unit back from $file"
  done
  rm -rf -- "$copy"
  systemctl daemon-reload || k3s_ha_warn "systemctl daemon-reload failed after putting $unit back"
}

# Prints the version the installed k3s binary reports, or nothing if there is none.
k3s_ha_installed_version() {
  k3s_ha_version_of "$(k3s_ha_k3s_bin)"
}

# Usage: k3s_ha_version_of BINARY
# The release a k3s binary reports, or "" when there is none or it does not run.
k3s_ha_version_of() {
  local bin=$1 line _ version=""
  if [[ -x $bin ]] && line=$("$bin" --version 2>/dev/null); then
    # First line: "k3s version v1.36.4+k3s1 (abcdef01)"
    read -r _ _ version _ <<<"$line" || true
  fi
  printf '%s\n' "$version"
}

# Usage: k3s_ha_stage_dir VERSION
# Where install-k3s.sh stages VERSION on a node that already runs K3s: the binary a node would
# run after a reboot changes only at its own start step, so an agent never holds a kubelet
# newer than the API servers while they move (Kubernetes version skew policy; issue 17.2).
k3s_ha_stage_dir() {
  printf '%s/%s\n' "${K3S_HA_STAGE_DIR:-/var/lib/k3s-ha/stage}" "$1"
}

# Usage: k3s_ha_swap_in_staged VERSION
# Puts the binary install-k3s.sh staged for VERSION in place of the installed one (an atomic
# rename in the binary's own directory, as the K3s installer's setup_binary does), then drops
# every staged release. Nothing to do when none is staged.
k3s_ha_swap_in_staged() {
  local wanted=$1 staged bin
  staged=$(k3s_ha_stage_dir "$wanted")/k3s
  [[ -e $staged ]] || return 0
  bin=$(k3s_ha_k3s_bin)
  if [[ $(k3s_ha_installed_version) != "$wanted" ]]; then
    if [[ $(k3s_ha_version_of "$staged") != "$wanted" ]]; then
      k3s_ha_die "the k3s staged at $staged does not report $wanted; run install-k3s.sh again"
    fi
    if ! { install -m 0755 "$staged" "$bin.k3s-ha-new" && mv -f "$bin.k3s-ha-new" "$bin"; }; then
      k3s_ha_die "could not put the staged k3s $wanted in place of $bin"
    fi
    if command -v restorecon >/dev/null 2>&1; then
      restorecon "$bin" 2>/dev/null || true # SELinux label, as the installer's setup_binary sets
    fi
    k3s_ha_log "k3s $wanted, staged by the install step, is now $bin"
  fi
  rm -rf -- "${K3S_HA_STAGE_DIR:-/var/lib/k3s-ha/stage}"
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

# Usage: k3s_ha_systemctl_bounded VERB UNIT TIMEOUT_SECONDS
# Runs `systemctl VERB UNIT` (start, restart, stop) within what is left of TIMEOUT_SECONDS.
# k3s units are Type=notify with TimeoutStartSec=0: start and restart block until k3s is
# up, and forever if a join hangs.
k3s_ha_systemctl_bounded() {
  local verb=$1 unit=$2 timeout=$3 doing=starting status=0
  if [[ $verb == stop ]]; then
    doing=stopping
  fi
  timeout --foreground "$(k3s_ha_time_left "$timeout")" systemctl "$verb" "$unit" || status=$?
  if ((status == 124)); then
    k3s_ha_die "$unit did not finish $doing within ${timeout}s; see journalctl -u $unit"
  elif ((status != 0)); then
    k3s_ha_die "systemctl $verb $unit failed (exit $status); see journalctl -u $unit"
  fi
}

# Usage: k3s_ha_begin_start
# How start-server.sh and start-agent.sh begin: stdout is kept for the node name alone (moved to fd 3; everything else goes to stderr), the
# K3S_READY_TIMEOUT budget starts now, and the installed binary must be the wanted
# K3S_VERSION when one is given. Call it before anything reads stdin.
k3s_ha_begin_start() {
  K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
  k3s_ha_require_seconds K3S_READY_TIMEOUT
  exec 3>&1 1>&2
  _k3s_ha_started_at=$(date +%s)
  if [[ -n ${K3S_VERSION:-} ]]; then
    k3s_ha_swap_in_staged "$K3S_VERSION"
    k3s_ha_require_installed_version "$K3S_VERSION"
  fi
}

# Usage: k3s_ha_start_service UNIT TIMEOUT_SECONDS NODE
# Enables UNIT and restarts it only when that changes something: a new config, a stopped
# or failed unit, or a node that runs another version than K3S_VERSION. A restart of a
# healthy server costs an etcd leader election, so a re-run with nothing new must leave it
# alone. The restart gets what is left of TIMEOUT_SECONDS; _k3s_ha_restarted_at is set to
# when it began, so that the readiness checks only take what K3s reported after it.
#
# What a node RUNS is not what /usr/local/bin/k3s reports: that is a multicall wrapper
# that execs a copy extracted under DATA_DIR/data/<hash>/ (k3s-io/k3s cmd/k3s/main.go,
# stageAndRun), so after the installer replaced it the running process is unchanged and
# its /proc/PID/exe never shows "(deleted)". The version the node runs is its Node's
# status.nodeInfo.kubeletVersion, which the kubelet posts when it starts.
# shellcheck disable=SC2154 # _k3s_ha_running, _k3s_ha_version_error: k3s_ha_read_running_version (lib/cluster.sh)
k3s_ha_start_service() {
  local unit=$1 timeout=$2 node=$3 reason=""
  if [[ ! $timeout =~ ^[0-9]+$ ]]; then
    k3s_ha_die "timeout for starting $unit must be a whole number of seconds, got '$timeout'"
  fi
  systemctl enable "$unit" || k3s_ha_die "systemctl enable $unit failed; is K3s installed on this node?"
  if [[ ${_k3s_ha_config_changed:-0} == 1 ]]; then
    reason="its config changed"
  elif ! systemctl is-active --quiet "$unit"; then
    reason="it is not running"
  elif [[ -n ${K3S_VERSION:-} ]]; then
    k3s_ha_read_running_version "$node"
    if [[ -z $_k3s_ha_running ]]; then
      reason="the version it runs cannot be read ($_k3s_ha_version_error); a restart starts $K3S_VERSION for sure"
    elif [[ $_k3s_ha_running != "$K3S_VERSION" ]]; then
      reason="it runs k3s $_k3s_ha_running and $K3S_VERSION is installed (upgrade)"
    fi
  fi
  if [[ -z $reason ]]; then
    k3s_ha_log "$unit is already running with this config${K3S_VERSION:+ and $K3S_VERSION}; not restarting"
    return 0
  fi
  k3s_ha_log "restarting $unit because $reason"
  _k3s_ha_restarted_at=$(date +%s)
  k3s_ha_systemctl_bounded restart "$unit" "$timeout"
}
