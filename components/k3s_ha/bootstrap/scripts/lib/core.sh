# shellcheck shell=bash
# lib.sh part: the steps' own plumbing: logs, errors, parameters, clean-up at exit, bounded waits.

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

# For steps whose failure would block more than it protects: from here on the script exits
# 0 whatever happens (an unexpected failure under set -e, k3s_ha_die, the step's time
# bound), and an early stop is logged as a warning. Cleanups registered with k3s_ha_at_exit
# still run.
k3s_ha_never_fail() {
  _k3s_ha_never_fail=1
  trap k3s_ha_run_at_exit EXIT
}

# Usage: k3s_ha_at_exit COMMAND...
# Runs COMMAND (words kept as given) when the script ends, however it ends: normally, by an
# error, or by SIGTERM/SIGINT/SIGHUP (e.g. from the step's time bound: the `timeout` the
# command puts around the script, bootstrap/commands.py).
# Used to remove temporary files that hold a token and to undo half-done changes.
k3s_ha_at_exit() {
  local quoted
  printf -v quoted '%q ' "$@"
  _k3s_ha_at_exit+=("$quoted")
  trap k3s_ha_run_at_exit EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

k3s_ha_run_at_exit() {
  local status=$? i
  set +eu # k3s_ha_never_fail may have come without any k3s_ha_at_exit
  for ((i = ${#_k3s_ha_at_exit[@]} - 1; i >= 0; i--)); do
    eval "${_k3s_ha_at_exit[i]}"
  done
  _k3s_ha_at_exit=()
  if [[ -n ${_k3s_ha_never_fail:-} ]] && ((status != 0)); then
    k3s_ha_warn "stopped early (exit $status); reporting success anyway"
    status=0
  fi
  exit "$status"
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

# Prints its argument, or 1 when it is 0: `timeout 0` means no limit at all.
k3s_ha_at_least_one() {
  printf '%s\n' "$(($1 > 0 ? $1 : 1))"
}

# Usage: k3s_ha_wait_until DESCRIPTION TIMEOUT_SECONDS CHECK_FUNCTION [HINT]
# Calls CHECK_FUNCTION (at least once) every K3S_HA_POLL_SECONDS until it succeeds or
# TIMEOUT_SECONDS have passed, counted from _k3s_ha_started_at (epoch seconds) if the role
# script set it, else from now: that way one K3S_READY_TIMEOUT bounds restart and wait
# together, and Pulumi's own timeout (set above it) never fires first. CHECK_FUNCTION runs in an `if`, where `set -e` is off, so it
# must return its result explicitly. It may put what it saw in _k3s_ha_wait_status: that is
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
  deadline=$((${_k3s_ha_started_at:-$(date +%s)} + timeout))
  _k3s_ha_wait_status=""
  while true; do
    if "$check"; then
      k3s_ha_log "done waiting for $description"
      return 0
    fi
    if [[ -n $_k3s_ha_wait_status && $_k3s_ha_wait_status != "$last_status" ]]; then
      k3s_ha_log "waiting for $description: $_k3s_ha_wait_status"
      last_status=$_k3s_ha_wait_status
    fi
    if (($(date +%s) >= deadline)); then
      message="timed out after ${timeout}s waiting for $description"
      if [[ -n $_k3s_ha_wait_status ]]; then
        message+=": $_k3s_ha_wait_status"
      fi
      if [[ -n $hint ]]; then
        message+="; $hint"
      fi
      k3s_ha_die "$message"
    fi
    sleep "$poll"
  done
}

# Usage: k3s_ha_time_left TIMEOUT_SECONDS
# Prints how much of TIMEOUT_SECONDS is left, counted from _k3s_ha_started_at like
# k3s_ha_wait_until does (the whole of it when that is unset), and at least 1, because
# `timeout 0` means no limit at all.
k3s_ha_time_left() {
  local left=$1
  if [[ -n ${_k3s_ha_started_at:-} ]]; then
    left=$((_k3s_ha_started_at + $1 - $(date +%s)))
  fi
  printf '%s\n' "$((left > 0 ? left : 1))"
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

# An epoch time for messages.
k3s_ha_time() {
  date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ
}
