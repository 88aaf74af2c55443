# shellcheck shell=bash
# Shared helpers for the k3s-ha node scripts.
#
# Every role script sources it, from the root-owned bundle directory Pulumi runs it in
# (bootstrap/commands.py) or from wherever a person runs it by hand, so it must only define
# functions: anything it did at top level would run before every role script.
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
  if [[ -n ${_k3s_ha_config:-} ]]; then
    from_config=$(k3s_ha_config_value data-dir) || from_config=""
  fi
  printf '%s\n' "${from_config:-/var/lib/rancher/k3s}"
}

# Succeeds once this server has embedded etcd data: from then on K3s ignores cluster-init
# and rejoins its own cluster from that data.
k3s_ha_has_etcd_data() {
  # Not the db/etcd directory: K3s creates it and writes its `name` file on every start,
  # before joining; only member/wal means etcd has run here (k3s-io/k3s pkg/etcd/etcd.go,
  # IsInitialized and walDir). A server whose join failed has the directory and no data.
  [[ -d "$(k3s_ha_data_dir)/server/db/etcd/member/wal" ]]
}

# The path the installer puts k3s at. A fixed path rather than a PATH lookup, so that the
# version check sees the binary the systemd unit runs.
k3s_ha_k3s_bin() {
  printf '%s/k3s\n' "${K3S_HA_BIN_DIR:-/usr/local/bin}"
}

# --- SSH to other nodes (remove-members.sh, evict-node.sh) --------------------------------

# Usage: k3s_ha_load_ssh_key
# Loads the SSH private key from stdin into an ssh-agent started for this run, so that it
# never touches a disk (`ssh-add -` reads the key from stdin: openssh ssh-add.c, filename
# "-"). The agent detaches into a session of its own (openssh ssh-agent.c: the forked agent
# calls setsid()), out of reach of the signal the step's time bound sends to the step's
# process group, so it is stopped at exit however the step ends. Also makes the run's SSH
# directory (_k3s_ha_ssh_dir, mode 0700 in TMPDIR, removed at exit) for the known_hosts file
# k3s_ha_pin_host_key writes and what ssh says on stderr.
k3s_ha_load_ssh_key() {
  local key
  key=$(cat)
  if [[ -z $key ]]; then
    k3s_ha_die "the SSH private key must arrive on stdin"
  fi
  _k3s_ha_ssh_dir=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/k3s-ha-ssh.XXXXXX") \
    || k3s_ha_die "could not create a temporary directory in ${TMPDIR:-/tmp}"
  k3s_ha_at_exit rm -rf -- "$_k3s_ha_ssh_dir"
  eval "$(ssh-agent -s)" >/dev/null || k3s_ha_die "could not start ssh-agent"
  k3s_ha_at_exit k3s_ha_stop_ssh_agent
  printf '%s\n' "$key" | ssh-add -q - >/dev/null 2>&1 || k3s_ha_die "ssh-add refused the SSH private key"
}

k3s_ha_stop_ssh_agent() {
  if [[ -n ${SSH_AGENT_PID:-} ]]; then
    ssh-agent -k >/dev/null 2>&1 || true
  fi
}

# Usage: k3s_ha_pin_host_key ADDRESS KEY   (after k3s_ha_load_ssh_key)
# Makes KEY (a public host key, "TYPE BASE64" as in authorized_keys; a comment after it is
# dropped) the only key k3s_ha_ssh accepts from ADDRESS: a line "ADDRESS TYPE BASE64" in
# _k3s_ha_ssh_dir/known_hosts (mode 0600). Fails, pinning nothing, unless ADDRESS is a host
# name or IP address and KEY a key of a type OpenSSH takes, so that nothing else (a
# pattern, a second line) ends up in that file.
k3s_ha_pin_host_key() {
  local address=$1 type blob file=${_k3s_ha_ssh_dir:?k3s_ha_load_ssh_key first}/known_hosts
  [[ $2 != *[$'\n\r']* ]] || return 1
  read -r type blob _ <<<"$2" || true
  [[ $address =~ ^[0-9A-Fa-f.:]+$|^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]] || return 1
  # rsa-sha2-* name signature algorithms; the key itself is an ssh-rsa key.
  if [[ $type == rsa-sha2-256 || $type == rsa-sha2-512 ]]; then
    type=ssh-rsa
  fi
  [[ $type =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa)$ && $blob =~ ^[A-Za-z0-9+/]+={0,3}$ ]] || return 1
  (umask 077 && printf '%s %s %s\n' "$address" "$type" "$blob" >>"$file") || k3s_ha_die "could not write $file"
  chmod 600 -- "$file" || k3s_ha_die "could not set mode 0600 on $file"
  _k3s_ha_pinned_addresses+=" $address "
}

# Usage: k3s_ha_ssh ADDRESS SECONDS COMMAND [VAR]
# Runs COMMAND as K3S_HA_SSH_USER on ADDRESS with the key k3s_ha_load_ssh_key loaded,
# connecting within K3S_HA_SSH_TIMEOUT seconds (default 10) and ending within SECONDS.
# COMMAND's stdout goes to stdout, or into variable VAR (then call it outside `$(...)`, or
# _k3s_ha_ssh_host_key_refused is lost with the subshell; VAR must not be one of this
# function's locals, whose names all start with ssh_). --foreground keeps ssh in the
# step's process group, where the step's bound reaches it.
# An address k3s_ha_pin_host_key pinned must answer with that key, and only with it (no
# global known_hosts): OpenSSH checks it during key exchange, before it authenticates or
# sends the command, and with StrictHostKeyChecking=yes a key it does not know, or another
# one, fails the connection (exit 255, "Host key verification failed."; openssh-portable
# sshconnect.c check_host_key, sshconnect2.c verify_host_key_callback). Then
# _k3s_ha_ssh_host_key_refused is 1 (else 0), so that callers can say why. Any other address
# keeps accepting whatever key it answers with; callers warn about that. The agent is never
# forwarded, whatever ssh_config says: whoever answers must not use the key.
k3s_ha_ssh() {
  local ssh_address=$1 ssh_limit=$2 ssh_command=$3 ssh_status=0 ssh_output ssh_errors ssh_checking
  local ssh_error_file=${_k3s_ha_ssh_dir:?k3s_ha_load_ssh_key first}/ssh-errors
  ssh_checking=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null)
  if [[ ${_k3s_ha_pinned_addresses:-} == *" $ssh_address "* ]]; then
    ssh_checking=(-o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$_k3s_ha_ssh_dir/known_hosts")
  fi
  _k3s_ha_ssh_host_key_refused=0
  ssh_output=$(timeout --foreground "$ssh_limit" ssh -n -o BatchMode=yes "${ssh_checking[@]}" \
    -o GlobalKnownHostsFile=/dev/null -o CheckHostIP=no -o ForwardAgent=no -o LogLevel=ERROR \
    -o "ConnectTimeout=${K3S_HA_SSH_TIMEOUT:-10}" "$K3S_HA_SSH_USER@$ssh_address" "$ssh_command" \
    2>"$ssh_error_file") || ssh_status=$?
  ssh_errors=$(<"$ssh_error_file")
  if [[ -n $ssh_errors ]]; then
    printf '%s\n' "$ssh_errors" >&2
  fi
  if ((ssh_status == 255)) && [[ $ssh_errors == *"Host key verification failed."* ]]; then
    _k3s_ha_ssh_host_key_refused=1
  fi
  if [[ -n ${4:-} ]]; then
    printf -v "$4" '%s' "$ssh_output"
  elif [[ -n $ssh_output ]]; then
    printf '%s\n' "$ssh_output"
  fi
  return "$ssh_status"
}

# Succeeds when the last k3s_ha_ssh failed because the address answered with another host
# key than the one pinned for it (or a pinned address offered none of that type).
k3s_ha_ssh_refused_host_key() {
  ((${_k3s_ha_ssh_host_key_refused:-0}))
}

# Usage: k3s_ha_require_ssh_params
# Checks what k3s_ha_ssh needs: K3S_HA_SSH_USER is a login name, K3S_HA_SSH_TIMEOUT seconds.
k3s_ha_require_ssh_params() {
  K3S_HA_SSH_TIMEOUT=${K3S_HA_SSH_TIMEOUT:-10}
  k3s_ha_require_seconds K3S_HA_SSH_TIMEOUT
  if [[ ! ${K3S_HA_SSH_USER:-} =~ ^[a-z_][a-z0-9_.-]*$ ]]; then
    k3s_ha_die "K3S_HA_SSH_USER must be a login name, got '${K3S_HA_SSH_USER:-}'"
  fi
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
# and the file holds the cluster token. Sets _k3s_ha_config_changed to 1 when the content
# differs from what was there before, 0 otherwise, so callers restart only when needed.
# The content is read into memory first, so the temporary file (same directory, so that
# the final mv is a rename; umask 077) exists only for a few builtins and is removed on
# any exit or signal; one that a SIGKILL left behind is removed by the next run.
k3s_ha_write_config() {
  local path=$1 dir name tmp content stale setting=$'\n''[[:space:]]*[^#[:space:]]'
  dir=$(dirname -- "$path")
  name=$(basename -- "$path")
  content=""
  if IFS= read -r -d '' content; then
    k3s_ha_die "the content for $path contains a NUL byte"
  fi
  # An empty file would make k3s start with defaults, e.g. a fresh single-node cluster
  # instead of a join, which is far worse than failing here.
  # A regex, not grep: a here-string may go through a file in TMPDIR, and this is a token.
  if [[ ! $'\n'$content =~ $setting ]]; then
    k3s_ha_die "refusing to write an empty $path: its content must arrive on stdin"
  fi
  if [[ ! -d $dir ]]; then
    (umask 022 && mkdir -p -- "$dir") || k3s_ha_die "could not create $dir"
  fi
  for stale in "$dir/.$name".*; do
    if [[ -f $stale ]]; then
      rm -f -- "$stale" && k3s_ha_log "removed $stale, left by an earlier run that was killed"
    fi
  done
  tmp=$(umask 077 && mktemp "$dir/.$name.XXXXXX") \
    || k3s_ha_die "could not create a temporary file in $dir"
  k3s_ha_at_exit rm -f -- "$tmp"
  if ! (umask 077 && printf '%s' "$content" >"$tmp"); then
    k3s_ha_die "could not write $path"
  fi
  chmod 600 -- "$tmp" || k3s_ha_die "could not set mode 0600 on a temporary file in $dir"
  # sha256sum rather than cmp: coreutils is on every node, diffutils is not.
  if [[ -f $path && $(sha256sum <"$tmp") == "$(sha256sum <"$path")" ]]; then
    _k3s_ha_config_changed=0
  else
    _k3s_ha_config_changed=1
  fi
  # Replace even when unchanged: this also repairs a too-open mode on the old file.
  mv -f -- "$tmp" "$path" || k3s_ha_die "could not replace $path"
  if [[ $_k3s_ha_config_changed == 1 ]]; then
    k3s_ha_log "wrote $path (changed)"
  else
    k3s_ha_log "$path is unchanged"
  fi
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

# Usage: k3s_ha_kubectl ARGS...
# `k3s kubectl` with the credentials this node has: the admin kubeconfig on a server (the
# default of k3s kubectl), or the file K3S_HA_KUBECONFIG names. An agent has no admin
# kubeconfig; start-agent.sh points K3S_HA_KUBECONFIG at the kubelet's own,
# DATA_DIR/agent/kubelet.kubeconfig (k3s-io/k3s pkg/agent/config/config.go), with which a
# node may read Node objects (Kubernetes Node authorizer).
k3s_ha_kubectl() {
  local k3s_bin
  k3s_bin=$(k3s_ha_k3s_bin)
  if [[ -n ${K3S_HA_KUBECONFIG:-} ]]; then
    "$k3s_bin" kubectl --kubeconfig "$K3S_HA_KUBECONFIG" "$@" </dev/null
  else
    "$k3s_bin" kubectl "$@" </dev/null
  fi
}

# --- other nodes of the cluster (evict-node.sh, record-members.sh, remove-members.sh) ----

# The kubectl output format k3s_ha_node_rows prints: "name|etcd role|Ready|InternalIP|cluster
# label", one node a line. Never an annotation: one may hold any text, newlines too, which
# could forge rows.
k3s_ha_node_rows_format() {
  printf '%s\n' 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.metadata.labels.node-role\.kubernetes\.io/etcd}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.addresses[?(@.type=="InternalIP")].address}{"|"}{.metadata.labels.k3s-ha\.io/cluster}{"\n"}{end}'
}

# Prints "name|etcd|ready|ip|label" for every Node (one API call of at most 30 s): etcd is
# "true" for a server (K3s's node-role.kubernetes.io/etcd label), ready the Ready
# condition's status (True, False, or Unknown once the kubelet stopped reporting), label the
# k3s-ha.io/cluster label an older release put on its nodes (lib.sh k3s_ha_load_record).
k3s_ha_node_rows() {
  k3s_ha_kubectl get nodes -o "$(k3s_ha_node_rows_format)" --request-timeout=30s
}

# Usage: k3s_ha_forget_node NAME SECONDS
# Deletes Node NAME, waiting up to SECONDS for it to go (a server's etcd finalizer removes its
# member first), and its NAME.node-password.k3s secret, so a new machine may take the name.
# Warns instead of failing: the evict steps never fail the `up` (the join then reports a clash).
k3s_ha_forget_node() {
  k3s_ha_kubectl delete node "$1" --wait=true "--timeout=${2}s" --request-timeout=30s \
    || k3s_ha_warn "could not delete node $1"
  k3s_ha_kubectl -n kube-system delete secret "$1.node-password.k3s" --ignore-not-found --request-timeout=30s \
    || k3s_ha_warn "could not delete secret $1.node-password.k3s"
}

# Usage: k3s_ha_reach_node NAME ADDRESS COMMAND KEY   (after k3s_ha_load_ssh_key)
# Runs COMMAND over SSH on node NAME at ADDRESS (from the member record) with KEY ("TYPE
# BASE64", from the record; empty: none, reached unpinned with a warning) pinned, COMMAND's stdout to stderr, within
# K3S_HA_SSH_TIMEOUT + 30 s. Succeeds when it ran there and succeeded. Otherwise
# _k3s_ha_unreachable says why, worded to follow the node's name ("does not answer SSH"). An
# address that answers with another key than the pinned one counts as unreachable: whoever
# answers there is not NAME and was sent nothing. With NotReady this is how both scripts
# decide that a node is gone. Call it outside `$(...)`, or what k3s_ha_ssh learnt is lost.
# shellcheck disable=SC2034 # _k3s_ha_unreachable is for the callers
k3s_ha_reach_node() {
  local name=$1 address=$2 command=$3 key=$4 status=0
  _k3s_ha_unreachable="does not answer SSH"
  if ! k3s_ha_is_node_name "$name"; then
    _k3s_ha_unreachable="has a name that is no node name"
    return 1
  fi
  # The host must call itself NAME before anything else runs there (issue 17.4): an address
  # can belong to another machine now (a renamed host, a reused address), which must not be
  # stopped or uninstalled for a node that left.
  command="[ \"\$(hostname | tr '[:upper:]' '[:lower:]')\" = '$name' ] || exit 3; $command"
  if [[ ! $address =~ ^[0-9A-Fa-f.:]+$ ]]; then
    _k3s_ha_unreachable="has no address to reach it at"
  elif [[ $key == none ]]; then
    _k3s_ha_unreachable="has no usable recorded host key (nothing was sent to $address)"
  elif [[ -n $key ]] && ! k3s_ha_pin_host_key "$address" "$key"; then
    _k3s_ha_unreachable="has a recorded host key that is not one (nothing was sent to $address)"
  else
    if [[ -n $key ]]; then
      k3s_ha_log "$name: SSH to $address must answer with its pinned host key"
    else
      k3s_ha_warn "$name has no pinned SSH host key in the member record: SSH to $address accepts whatever host key answers there (README, Accepted risks: unpinned hosts)"
    fi
    k3s_ha_ssh "$address" "$((K3S_HA_SSH_TIMEOUT + 30))" "$command" >&2 || status=$?
    if ((status == 0)); then
      _k3s_ha_unreachable=""
      return 0
    elif k3s_ha_ssh_refused_host_key; then
      _k3s_ha_unreachable="answers SSH at $address with another host key than its pinned one (so whoever answers there is not $name, and was sent nothing)"
    elif ((status == 3)); then
      _k3s_ha_unreachable="answers SSH at $address under another host name (so whoever answers there is not $name, and nothing was done there)"
    fi
  fi
  return 1
}

# Usage: k3s_ha_read_running_version NODE
# Sets _k3s_ha_running to the k3s version NODE runs (its Node's
# status.nodeInfo.kubeletVersion), or to nothing when the API does not say; what it said
# then is in _k3s_ha_version_error.
k3s_ha_read_running_version() {
  local out
  _k3s_ha_running="" _k3s_ha_version_error=""
  if out=$(k3s_ha_kubectl get node "$1" --request-timeout=10s \
    -o 'jsonpath={.status.nodeInfo.kubeletVersion}' 2>&1) && k3s_ha_version_key "$out" >/dev/null; then
    _k3s_ha_running=$out
  else
    _k3s_ha_version_error=$(k3s_ha_brief "${out:-<empty>}")
  fi
}

# Usage: k3s_ha_read_condition NODE TYPE
# Reads condition TYPE of NODE into _k3s_ha_condition (True, False, Unknown, or
# "error: <what kubectl said>"), _k3s_ha_heartbeat and _k3s_ha_transition (its
# lastHeartbeatTime and lastTransitionTime in epoch seconds, 0 when unknown).
k3s_ha_read_condition() {
  local node=$1 type=$2 out selector status heartbeat transition
  selector="{.status.conditions[?(@.type==\"$type\")]"
  _k3s_ha_condition="" _k3s_ha_heartbeat=0 _k3s_ha_transition=0
  if ! out=$(k3s_ha_kubectl get node "$node" --request-timeout=10s \
    -o "jsonpath=$selector.status} $selector.lastHeartbeatTime} $selector.lastTransitionTime}" 2>&1); then
    _k3s_ha_condition=$(k3s_ha_brief "error: $out")
    return 0
  fi
  read -r status heartbeat transition _ <<<"$out" || true
  _k3s_ha_condition=$(k3s_ha_brief "$status")
  _k3s_ha_heartbeat=$(date -u -d "$heartbeat" +%s 2>/dev/null) || _k3s_ha_heartbeat=0
  _k3s_ha_transition=$(date -u -d "$transition" +%s 2>/dev/null) || _k3s_ha_transition=0
}

# An epoch time for messages.
k3s_ha_time() {
  date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ
}

# Wait check: node _k3s_ha_wait_node is Ready.
k3s_ha_node_ready() {
  k3s_ha_read_condition "$_k3s_ha_wait_node" Ready
  if [[ $_k3s_ha_condition == True ]]; then
    return 0
  fi
  _k3s_ha_wait_status="Ready (last seen: $_k3s_ha_condition)"
  return 1
}

# Adds to _k3s_ha_unmet what keeps the node _k3s_ha_wait_node from counting as up after its
# own restart (_k3s_ha_restarted_at, when this run restarted it):
# - Ready must be True in a status the kubelet posted after the restart (lastHeartbeatTime
#   not before it): right after a restart the Node still shows the old kubelet's Ready=True
#   until the new one posts its first status, which it does as soon as it runs, stamping
#   Ready's lastHeartbeatTime with its own clock, the one `date` reads here
#   (kubernetes pkg/kubelet/nodestatus/setters.go, ReadyCondition);
# - with K3S_VERSION, the Node's kubeletVersion must be it: the node RUNS the new version.
k3s_ha_check_node_after_restart() {
  local node=$_k3s_ha_wait_node since=${_k3s_ha_restarted_at:-}
  k3s_ha_read_condition "$node" Ready
  if [[ $_k3s_ha_condition != True ]]; then
    _k3s_ha_unmet+=("Ready (last seen: $_k3s_ha_condition)")
  elif [[ -n $since ]] && ((_k3s_ha_heartbeat < since)); then
    _k3s_ha_unmet+=("Ready (last seen: True, but from $(k3s_ha_time "$_k3s_ha_heartbeat"), before the restart at $(k3s_ha_time "$since"))")
  fi
  if [[ -n ${K3S_VERSION:-} ]]; then
    k3s_ha_read_running_version "$node"
    if [[ $_k3s_ha_running != "$K3S_VERSION" ]]; then
      _k3s_ha_unmet+=("running version $K3S_VERSION (last seen: ${_k3s_ha_running:-$_k3s_ha_version_error})")
    fi
  fi
}

# Sets _k3s_ha_wait_status from _k3s_ha_unmet; succeeds when nothing is unmet.
k3s_ha_report_unmet() {
  local item joined=""
  if ((${#_k3s_ha_unmet[@]} == 0)); then
    return 0
  fi
  for item in "${_k3s_ha_unmet[@]}"; do
    joined+="${joined:+; }$item"
  done
  _k3s_ha_wait_status="not yet satisfied: $joined"
  return 1
}

# Wait check: server _k3s_ha_wait_node is a full member. Ready alone is not enough: a
# joining server is Ready while etcd still holds it as a learner, and the next server's
# join fails if it starts before this one is promoted. /ping is not enough either: the
# supervisor answers it before etcd and the apiserver are up; /readyz answers ok only
# once the apiserver (and its etcd) is.
# EtcdIsVoter is set by the etcd leader, which refreshes an unchanged condition only every
# 5 minutes (k3s-io/k3s pkg/etcd/etcd.go, setEtcdStatusCondition, heartbeatInterval). A
# restart of a member with its data keeps its membership, so its True stands; but a server
# that starts without etcd data (_k3s_ha_joining: a join, a rejoin after a restore, a
# rebuilt machine whose Node still shows the old True) must show a transition to True
# after its start.
k3s_ha_server_ready() {
  local readyz since=${_k3s_ha_restarted_at:-}
  _k3s_ha_unmet=()
  if readyz=$(k3s_ha_kubectl get --raw=/readyz --request-timeout=10s 2>&1); then
    readyz=$(k3s_ha_brief "$readyz")
  else
    readyz=$(k3s_ha_brief "error: $readyz")
  fi
  [[ $readyz == ok ]] || _k3s_ha_unmet+=("readyz (last seen: $readyz)")
  k3s_ha_check_node_after_restart
  k3s_ha_read_condition "$_k3s_ha_wait_node" EtcdIsVoter
  if [[ $_k3s_ha_condition != True ]]; then
    _k3s_ha_unmet+=("EtcdIsVoter (last seen: $_k3s_ha_condition)")
  elif [[ -n $since && -n ${_k3s_ha_joining:-} ]] && ((_k3s_ha_transition < since)); then
    _k3s_ha_unmet+=("EtcdIsVoter (last seen: True, but since $(k3s_ha_time "$_k3s_ha_transition"), before this server started without etcd data at $(k3s_ha_time "$since"))")
  fi
  k3s_ha_report_unmet
}

# Usage: k3s_ha_wait_server_ready NODE TIMEOUT_SECONDS
# Waits until the local server NODE answers /readyz with ok, is Ready and an etcd voter
# (after its restart, and running K3S_VERSION when that is set: k3s_ha_server_ready).
k3s_ha_wait_server_ready() {
  _k3s_ha_wait_node=$1
  k3s_ha_wait_until "k3s server $1 to be ready (readyz ok, Ready=True, EtcdIsVoter=True${K3S_VERSION:+, running $K3S_VERSION})" \
    "$2" k3s_ha_server_ready "see journalctl -u k3s"
}

# --- the member record (record-members.sh, remove-members.sh, evict-node.sh) ---------------
#
# Which nodes this configuration has, with the role, private address and pinned SSH host key
# Pulumi gave each, is kept in one ConfigMap, kube-system/k3s-ha-members, which only cluster
# admins may write: a kubelet may write its own Node (labels, annotations and addresses
# included) but no ConfigMap (Kubernetes Node authorizer and NodeRestriction; issue 18.1).
# So no node can make the servers treat another machine as a member, reach an address of its
# choosing or trust a host key of its choosing. One line per node, sorted by name:
#   STATE NAME ROLE ADDRESS [TYPE BASE64]
# STATE is member (in the configuration), leaving (left it; remove-members.sh takes it out)
# or removed (taken out; one that comes back is leaving again, issue 17.5), ROLE server|agent;
# the key "none" says that nothing may be sent to the node (its recorded key was no key).

_k3s_ha_record_name=k3s-ha-members

# Usage: k3s_ha_record_line_ok LINE
k3s_ha_record_line_ok() {
  local state name role address type blob extra
  read -r state name role address type blob extra <<<"$1"
  [[ $state =~ ^(member|leaving|removed)$ && $role =~ ^(server|agent)$ && -z $extra ]] || return 1
  k3s_ha_is_node_name "${name:-}" && [[ ${address:-} =~ ^[0-9A-Fa-f.:]+$ ]] || return 1
  [[ -z $type || ($type == none && -z $blob) ]] || k3s_ha_is_host_key "$type $blob"
}

# Usage: k3s_ha_is_host_key "TYPE BASE64"
k3s_ha_is_host_key() {
  local type blob extra
  [[ $1 != *[$'\n\r']* ]] || return 1
  read -r type blob extra <<<"$1"
  [[ $type =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|rsa-sha2-(256|512))$ ]] \
    && [[ ${blob:-} =~ ^[A-Za-z0-9+/]+={0,3}$ && -z $extra ]]
}

# Usage: k3s_ha_load_record   (the caller declares: local -A _k3s_ha_record=())
# Reads the record into _k3s_ha_record[NAME]="STATE ROLE ADDRESS [TYPE BASE64]" and keeps the
# text read in _k3s_ha_record_text. With no record yet (a cluster an older k3s-ha release set
# up) it is derived, in memory, from the Nodes labelled k3s-ha.io/cluster=K3S_HA_CLUSTER and
# their addresses, as that release decided membership (_k3s_ha_record_legacy=1; their keys:
# k3s_ha_legacy_key): the first record-members.sh run writes it, and labels are not read again. Returns 1, with
# _k3s_ha_record_error, when the API cannot say, or the record does not parse.
# shellcheck disable=SC2004 # _k3s_ha_record is the caller's associative array
k3s_ha_load_record() {
  local out line name etcd _ready ip label role
  _k3s_ha_record=()
  _k3s_ha_record_text=""
  _k3s_ha_record_legacy=0
  if out=$(k3s_ha_kubectl -n kube-system get configmap "$_k3s_ha_record_name" -o 'jsonpath={.data.nodes}' --request-timeout=30s 2>&1); then
    while IFS= read -r line; do
      [[ -n $line ]] || continue
      if ! k3s_ha_record_line_ok "$line"; then
        _k3s_ha_record_error="kube-system/$_k3s_ha_record_name has a line that is not 'STATE NAME ROLE ADDRESS [TYPE BASE64]': '$(k3s_ha_brief "$line")'"
        return 1
      fi
      read -r _ name _ <<<"$line"
      _k3s_ha_record[$name]=${line/ $name / }
    done <<<"$out"
    _k3s_ha_record_text=$(k3s_ha_record_text)
    return 0
  fi
  if [[ $out != *"(NotFound)"* ]]; then
    _k3s_ha_record_error=$(k3s_ha_brief "$out")
    return 1
  fi
  # Not the annotations in this list: one may hold any text, newlines too, which could forge
  # rows. k3s_ha_legacy_key reads a node's own when it is needed.
  if ! out=$(k3s_ha_node_rows 2>&1); then
    _k3s_ha_record_error=$(k3s_ha_brief "$out")
    return 1
  fi
  _k3s_ha_record_legacy=1
  while IFS='|' read -r name etcd _ready ip label; do
    [[ -n $name && -n ${K3S_HA_CLUSTER:-} && $label == "$K3S_HA_CLUSTER" ]] || continue
    role=agent
    [[ $etcd != true ]] || role=server
    if k3s_ha_record_line_ok "member $name $role ${ip:--}"; then
      _k3s_ha_record[$name]="member $role $ip"
    else
      k3s_ha_warn "node $name is labelled k3s-ha.io/cluster=$K3S_HA_CLUSTER but has no usable address ('$ip'): not taken into the record"
    fi
  done <<<"$out"
  if ((${#_k3s_ha_record[@]} > 0)); then
    k3s_ha_log "no kube-system/$_k3s_ha_record_name yet: took ${#_k3s_ha_record[@]} members from the k3s-ha.io/cluster=$K3S_HA_CLUSTER labels an older k3s-ha set (the last time labels are read)"
  fi
}

# Usage: k3s_ha_legacy_key NAME
# For a record derived from labels: prints node NAME's pinned host key as an older k3s-ha
# recorded it (annotation k3s-ha.io/ssh-host-key), nothing when it has none, and "none" (send
# nothing there) when it cannot be read or is not one host key: the annotation is the node's
# own kubelet's to write.
k3s_ha_legacy_key() {
  local key
  [[ ${_k3s_ha_record_legacy:-0} == 1 ]] || return 0
  if ! key=$(k3s_ha_kubectl get node "$1" -o 'jsonpath={.metadata.annotations.k3s-ha\.io/ssh-host-key}' --request-timeout=30s 2>/dev/null); then
    k3s_ha_warn "could not read $1's k3s-ha.io/ssh-host-key annotation: nothing is sent to it"
    printf 'none\n'
  elif [[ -z $key ]] || k3s_ha_is_host_key "$key"; then
    printf '%s\n' "$key"
  else
    k3s_ha_warn "$1's k3s-ha.io/ssh-host-key annotation is not an SSH host key: nothing is sent to it"
    printf 'none\n'
  fi
}

# Prints the record as stored: "STATE NAME ROLE ADDRESS [TYPE BASE64]" lines, sorted by name.
k3s_ha_record_text() {
  local name state rest
  for name in "${!_k3s_ha_record[@]}"; do
    read -r state rest <<<"${_k3s_ha_record[$name]}"
    printf '%s %s %s\n' "$state" "$name" "$rest"
  done | LC_ALL=C sort -k2,2
}

# Usage: k3s_ha_save_record
# Writes the record when it differs from what was read (no API write otherwise): one
# `kubectl apply` of the whole ConfigMap, from a file (it grows with the cluster).
k3s_ha_save_record() {
  local text file out
  text=$(k3s_ha_record_text)
  if [[ $text == "$_k3s_ha_record_text" ]]; then
    return 0
  fi
  file=$(mktemp "${TMPDIR:-/tmp}/k3s-ha-record.XXXXXX") || k3s_ha_die "could not create a temporary file"
  k3s_ha_at_exit rm -f -- "$file"
  # Every character of the lines is [-a-z0-9.:+/= A-Z]: JSON needs only the newlines escaped.
  printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s","namespace":"kube-system"},"data":{"nodes":"%s"}}\n' \
    "$_k3s_ha_record_name" "${text//$'\n'/\\n}\\n" >"$file"
  if ! out=$(k3s_ha_kubectl apply -f "$file" --request-timeout=30s 2>&1); then
    k3s_ha_die "could not write kube-system/$_k3s_ha_record_name: $(k3s_ha_brief "$out")"
  fi
  _k3s_ha_record_text=$text
  k3s_ha_log "recorded the cluster's members in kube-system/$_k3s_ha_record_name"
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
# Leaves what it saw in _k3s_ha_ping_result for messages.
k3s_ha_ping() {
  local body status=0
  body=$(curl -ksf --max-time 5 "${1%/}/ping" 2>/dev/null) || status=$?
  if ((status != 0)); then
    _k3s_ha_ping_result="no answer (curl exit $status)"
    return 1
  fi
  if [[ $body != pong ]]; then
    _k3s_ha_ping_result="answered '$(k3s_ha_brief "$body")' instead of pong"
    return 1
  fi
  _k3s_ha_ping_result=pong
}

# Wait check: _k3s_ha_wait_url answers /ping.
k3s_ha_ping_answers() {
  if k3s_ha_ping "$_k3s_ha_wait_url"; then
    return 0
  fi
  _k3s_ha_wait_status=$_k3s_ha_ping_result
  return 1
}

# Usage: k3s_ha_wait_for_ping URL TIMEOUT_SECONDS
k3s_ha_wait_for_ping() {
  _k3s_ha_wait_url=$1
  k3s_ha_wait_until "$1 to answer /ping" "$2" k3s_ha_ping_answers \
    "the server there must be running, and a load balancer in front must have marked it healthy"
}

# --- config.yaml edits ---------------------------------------------------------------
# The config text lives in _k3s_ha_config, in memory: it holds the token, so it is only
# ever passed to bash functions and builtins, never to a command line or an output.

# The last line of every config.yaml Python sends (node_config.END_MARKER). A YAML
# comment, so it stays in the file harmlessly.
k3s_ha_config_end_marker() {
  printf '%s\n' '# k3s-ha: end of config.yaml'
}

# Loads config.yaml from stdin into _k3s_ha_config, byte for byte. Refuses stdin whose last
# line is not the end marker: a dropped SSH session or a killed sender can cut stdin short
# anywhere, and a config cut after `token:` but before `server:` would start a new cluster.
k3s_ha_config_from_stdin() {
  local end
  _k3s_ha_config=""
  if IFS= read -r -d '' _k3s_ha_config; then
    k3s_ha_die "the config.yaml on stdin contains a NUL byte"
  fi
  end=$(k3s_ha_config_end_marker)
  if [[ $'\n'$_k3s_ha_config != *$'\n'"$end"$'\n' ]]; then
    if [[ -z ${_k3s_ha_config//[[:space:]]/} ]]; then
      k3s_ha_die "refusing to write an empty config.yaml: its content must arrive on stdin"
    fi
    k3s_ha_die "the config.yaml on stdin does not end with the line '$end': it was cut short (or not sent by k3s-ha); nothing was written or restarted"
  fi
}

# Usage: k3s_ha_config_from_file FILE
# Loads FILE into _k3s_ha_config, byte for byte.
k3s_ha_config_from_file() {
  _k3s_ha_config=""
  [[ -r $1 ]] || k3s_ha_die "cannot read $1"
  if IFS= read -r -d '' _k3s_ha_config <"$1"; then
    k3s_ha_die "$1 contains a NUL byte; it cannot be a config.yaml"
  fi
}

# Usage: k3s_ha_config_save PATH
# Writes _k3s_ha_config to PATH like k3s_ha_write_config (atomic, 0600, sets
# _k3s_ha_config_changed, refuses empty content).
k3s_ha_config_save() {
  k3s_ha_write_config "$1" < <(printf '%s' "$_k3s_ha_config")
}

# --- registries.yaml ------------------------------------------------------------------
# A start script's stdin may carry a second document: config.yaml, then the line
# "--- # k3s-ha: registries.yaml follows", then /etc/rancher/k3s/registries.yaml (which may
# hold registry passwords, so it travels on stdin like the token). bootstrap/node_config.py
# writes that line; a rendered config.yaml never has a line starting with "---".

# After k3s_ha_config_from_stdin: moves the registries.yaml part out of _k3s_ha_config into
# _k3s_ha_registries and sets _k3s_ha_has_registries to 1, or to 0 when stdin had none.
# K3S_HA_WITH_REGISTRIES=1 (a start step's parameter) says stdin must carry one: config.yaml
# ends with the same end marker as the whole stdin, so a stdin cut between the two would
# otherwise look like "no registries" and remove the file.
k3s_ha_config_split_registries() {
  local separator=$'\n--- # k3s-ha: registries.yaml follows\n'
  _k3s_ha_registries=""
  _k3s_ha_has_registries=0
  if [[ $_k3s_ha_config == *"$separator"* ]]; then
    _k3s_ha_registries=${_k3s_ha_config#*"$separator"}
    _k3s_ha_config=${_k3s_ha_config%%"$separator"*}$'\n'
    _k3s_ha_has_registries=1
  elif [[ ${K3S_HA_WITH_REGISTRIES:-0} == 1 ]]; then
    k3s_ha_die "stdin ended after config.yaml although a registries.yaml was to follow (cut short?): nothing was written; run pulumi up again"
  fi
}

# Usage: k3s_ha_registries_save PATH
# After k3s_ha_config_save: writes _k3s_ha_registries to PATH like config.yaml (atomic, 0600)
# when stdin carried one; otherwise removes PATH if k3s-ha wrote it (its first line is the
# header node_config.py puts there) and leaves a file written by hand alone. K3s reads the
# file only when it starts, so _k3s_ha_config_changed ends up 1 when either file changed.
k3s_ha_registries_save() {
  local path=$1 config_changed=${_k3s_ha_config_changed:-0} first=""
  if ((${_k3s_ha_has_registries:-0})); then
    k3s_ha_write_config "$path" < <(printf '%s' "$_k3s_ha_registries")
  else
    _k3s_ha_config_changed=0
    if [[ -f $path ]]; then
      IFS= read -r first <"$path" || true
    fi
    if [[ $first == "# Written by k3s-ha from the registries input;"* ]]; then
      rm -f -- "$path" || k3s_ha_die "could not remove $path"
      k3s_ha_log "removed $path (no registries given any more)"
      _k3s_ha_config_changed=1
    fi
  fi
  if ((config_changed)); then
    _k3s_ha_config_changed=1
  fi
}

# Usage: k3s_ha_config_value KEY
# Prints the value of top-level scalar KEY (quotes and a trailing comment removed); fails
# when the key is absent. Never use it on a secret outside a variable assignment.
k3s_ha_config_value() {
  local pattern="^$1:([[:space:]]+(.*))?\$" line value lines=()
  mapfile -t lines < <(printf '%s' "${_k3s_ha_config:-}")
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
# Turns _k3s_ha_config into one that joins URL: its cluster-init and server lines give way
# to one `server: URL` where the first of them was; every other line (token included)
# stays as it was.
k3s_ha_config_join() {
  k3s_ha_config_replace_keys "server: $1" cluster-init server
}

# Usage: k3s_ha_config_replace_keys NEW_LINE KEY...
# Removes every top-level line of _k3s_ha_config that sets one of KEYs (quoted keys too:
# other tools write "server":) and puts NEW_LINE (if not empty) where the first of them
# was, or at the end, before the end marker line if there is one.
k3s_ha_config_replace_keys() {
  local new=$1 line key text="" placed=0 matched end lines=()
  shift
  end=$(k3s_ha_config_end_marker)
  mapfile -t lines < <(printf '%s' "$_k3s_ha_config")
  for line in "${lines[@]}"; do
    matched=0
    for key in "$@"; do
      if [[ $line =~ ^[\"\']?${key}[\"\']?: ]]; then
        matched=1
      fi
    done
    if ((matched == 0)); then
      if [[ $line == "$end" && $placed == 0 && -n $new ]]; then
        text+="$new"$'\n'
        placed=1
      fi
      text+="$line"$'\n'
      continue
    fi
    if ((placed == 0)) && [[ -n $new ]]; then
      text+="$new"$'\n'
    fi
    placed=1
  done
  if ((placed == 0)) && [[ -n $new ]]; then
    text+="$new"$'\n'
  fi
  _k3s_ha_config=$text
}

# Usage: k3s_ha_config_join_a_peer [ADDRESS...]
# Probes each address; on the first that answers /ping, rewrites _k3s_ha_config to join it
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
    k3s_ha_log "peer $address: $_k3s_ha_ping_result"
  done
  return 1
}

# --- tokens --------------------------------------------------------------------------

# Usage: k3s_ha_token_password TOKEN
# Prints the password part of a K3s token: TOKEN itself in the short form, the part after
# "K10<ca hash>::server:" (or ::node:) in the secure form K3s writes to server/token and
# server/agent-token (k3s-io/k3s pkg/server/server.go writeToken, clientaccess.FormatToken).
# Only for command substitutions into variables: never echo it anywhere else.
k3s_ha_token_password() {
  local token=$1
  if [[ $token =~ ^K10[0-9a-fA-F]*::(.*)$ ]]; then
    token=${BASH_REMATCH[1]}
    token=${token#server:}
    token=${token#node:}
  fi
  printf '%s\n' "$token"
}

# Usage: k3s_ha_refuse_token_change
# On a server that already holds cluster data, refuses (before anything is written or
# restarted) a config.yaml whose token or agent-token differs from the one K3s stored
# when the cluster was built (DATA_DIR/server/token, server/agent-token): K3s would not
# start ("bootstrap data already found and encrypted with different token"). The same
# value pinned again passes.
k3s_ha_refuse_token_change() {
  local key file stored wanted server_dir name
  server_dir=$(k3s_ha_data_dir)/server
  for key in token agent-token; do
    file=$server_dir/$key
    [[ -s $file ]] || continue
    wanted=$(k3s_ha_config_value "$key") || continue
    [[ -n $wanted ]] || continue
    IFS= read -r stored <"$file" || true
    if [[ $(k3s_ha_token_password "$stored") == "$(k3s_ha_token_password "$wanted")" ]]; then
      continue
    fi
    name=token
    if [[ $key == agent-token ]]; then
      name="agentToken (agent_token)"
    fi
    k3s_ha_die "refusing to change the cluster's $key: the new config.yaml's $key differs from the one this cluster was built with ($file), and K3s would refuse to start with it (bootstrap data encrypted with a different token). Nothing was changed. Set $name back to its current value, or rotate it first: on one server run 'k3s token rotate' (K3s v1.28.2, v1.27.7, v1.26.10, v1.25.15 or newer; see the K3s docs, cli/token), restart the servers one at a time, then the agents, and only then set the new value here"
  done
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

# Usage: k3s_ha_check_upgrade FROM TO [MINIMUM]
# Returns 0 when a node (or cluster) on K3s FROM may move to TO: FROM empty (nothing
# installed), the same tag, or an upgrade K3s supports. Dies, naming both versions and
# the way out, on a downgrade, a skipped minor version (docs/upgrades/manual.md), a
# move from the Dqlite era (before v1.19.1) to embedded etcd, or a move into TO's minor from
# a release below MINIMUM, the release every node must run first (K3S_HA_UPGRADE_FROM, from
# versions.py UPGRADE_PREREQUISITES: e.g. v1.33.7+k3s3, whose etcd 3.5.26 etcd 3.6 needs).
k3s_ha_check_upgrade() {
  local from=$1 to=$2 minimum=${3:-} from_key to_key dqlite_end minimum_key
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
  if [[ -n $minimum ]] && ((t[0] != f[0] || t[1] != f[1])); then
    minimum_key=$(k3s_ha_version_key "$minimum") \
      || k3s_ha_die "K3S_HA_UPGRADE_FROM must be a K3s release tag, got '$minimum'"
    if [[ $from_key < "$minimum_key" ]]; then
      k3s_ha_die "refusing to upgrade k3s from $from to $to: every node must run $minimum or a later release of its line first (K3s v${t[0]}.${t[1]} embeds a newer etcd that the etcd in $from cannot safely hand over to; k3s-ha versions.py UPGRADE_PREREQUISITES): set k3sVersion to $minimum, run pulumi up, then set it to $to"
    fi
  fi
  return 0
}
