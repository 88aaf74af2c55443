# shellcheck shell=bash
# lib.sh part: SSH from a server to other nodes (remove-members.sh, evict-node.sh).

# --- SSH to other nodes (remove-members.sh, evict-node.sh) --------------------------------

# Usage: k3s_ha_load_ssh_key
# Loads the SSH private key from stdin into an ssh-agent started for this run, so that it
# never touches a disk (`ssh-add -` reads the key from stdin: openssh ssh-add.c, filename
# "-"). The agent detaches into a session of its own (openssh ssh-agent.c: the forked agent
# calls setsid()), out of reach of the signal the step's time bound sends to the step's
# process group, so it is stopped at exit however the step ends; and should the step die
# without its exit handlers (SIGKILL), the agent forgets the key when the step's bound is over
# (`ssh-agent -t`: every key added gets that lifetime; run.sh passes the bound as
# K3S_HA_STEP_SECONDS, and 15 s more covers its 10 s kill-after). Also makes the run's SSH
# directory (_k3s_ha_ssh_dir, mode 0700 in TMPDIR, removed at exit) for the known_hosts file
# k3s_ha_pin_host_key writes and what ssh says on stderr.
k3s_ha_load_ssh_key() {
  local key
  k3s_ha_require_seconds K3S_HA_STEP_SECONDS
  key=$(cat)
  if [[ -z $key ]]; then
    k3s_ha_die "the SSH private key must arrive on stdin"
  fi
  _k3s_ha_ssh_dir=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/k3s-ha-ssh.XXXXXX") \
    || k3s_ha_die "could not create a temporary directory in ${TMPDIR:-/tmp}"
  k3s_ha_at_exit rm -rf -- "$_k3s_ha_ssh_dir"
  eval "$(ssh-agent -s -t "$((K3S_HA_STEP_SECONDS + 15))")" >/dev/null || k3s_ha_die "could not start ssh-agent"
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
      k3s_ha_warn "$name has no pinned SSH host key in the member record: SSH to $address accepts whatever host key answers there (docs/security.md, Accepted risks: unpinned hosts)"
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

# Usage: k3s_ha_is_host_key "TYPE BASE64"
k3s_ha_is_host_key() {
  local type blob extra
  [[ $1 != *[$'\n\r']* ]] || return 1
  read -r type blob extra <<<"$1"
  [[ $type =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|rsa-sha2-(256|512))$ ]] \
    && [[ ${blob:-} =~ ^[A-Za-z0-9+/]+={0,3}$ && -z $extra ]]
}

# Usage: k3s_ha_authorize_removal_key USER LINE
# Puts LINE, this cluster's removal key as the install step builds it
#   restrict[,from="ADDRESS,..."] ssh-ed25519 BLOB k3s-ha-removal:CLUSTER
# into USER's ~/.ssh/authorized_keys (K3S_HA_AUTHORIZED_KEYS in tests), in place of any line
# with the same comment (the key of an earlier first server, or other server addresses), and
# leaves every other line as it was. `restrict` turns off forwarding of every kind and ptys;
# `from=` lets the key in only from the servers' addresses (sshd(8), AUTHORIZED_KEYS FILE
# FORMAT). Nothing is written when the line is there already. Refuses a LINE of any other
# shape, so that nothing else (another option, a second line) gets into the file.
k3s_ha_authorize_removal_key() {
  local user=$1 line=$2 marker file dir home tmp kept
  [[ $line =~ ^restrict(,from=\"[0-9A-Fa-f.:,/]+\")?\ ssh-ed25519\ [A-Za-z0-9+/]+={0,3}\ (k3s-ha-removal:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$ ]] \
    || k3s_ha_die "K3S_HA_REMOVAL_KEY is not an authorized_keys line of a k3s-ha removal key"
  marker=${BASH_REMATCH[2]}
  file=${K3S_HA_AUTHORIZED_KEYS:-}
  if [[ -z $file ]]; then
    home=$(getent passwd "$user" | cut -d: -f6) || home=""
    [[ -n $home && -d $home ]] || k3s_ha_die "user $user (K3S_HA_SSH_USER) has no home directory on this machine"
    file=$home/.ssh/authorized_keys
  fi
  if [[ -f $file ]] && grep -qxF -- "$line" "$file"; then
    return 0
  fi
  dir=$(dirname -- "$file")
  if [[ ! -d $dir ]]; then
    (umask 077 && mkdir -p -- "$dir") || k3s_ha_die "could not create $dir"
    [[ -n ${K3S_HA_AUTHORIZED_KEYS:-} ]] || chown "$user:" "$dir" || k3s_ha_die "could not give $dir to $user"
  fi
  tmp=$(umask 077 && mktemp "$file.k3s-ha.XXXXXX") || k3s_ha_die "could not write in $dir"
  k3s_ha_at_exit rm -f -- "$tmp"
  {
    if [[ -f $file ]]; then
      while IFS= read -r kept || [[ -n $kept ]]; do
        [[ $kept == *" $marker" ]] || printf '%s\n' "$kept"
      done <"$file"
    fi
    printf '%s\n' "$line"
  } >"$tmp" || k3s_ha_die "could not write $tmp"
  if [[ -f $file ]]; then
    chown --reference="$file" -- "$tmp" || k3s_ha_die "could not give $tmp the owner of $file"
  elif [[ -z ${K3S_HA_AUTHORIZED_KEYS:-} ]]; then
    chown "$user:" -- "$tmp" || k3s_ha_die "could not give $tmp to $user"
  fi
  mv -f -- "$tmp" "$file" || k3s_ha_die "could not replace $file"
  k3s_ha_log "authorized this cluster's removal key (${marker}) for $user, from the servers only"
}
