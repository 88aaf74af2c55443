#!/usr/bin/env bash
# Records which nodes the configuration has, and names those that left it, on the first
# server after every server has started and before any agent starts. It is the only step on
# a server that sees every agent, and it SSHes nowhere (issue 16): adding an agent runs it
# and the agent's own steps, nothing else.
#
# 1. Reads the member record (lib.sh k3s_ha_load_record: kube-system/k3s-ha-members, which
#    only cluster admins may write; the first time, from an older release's labels).
# 2. Removes the Nodes that rebuilt agents' old machines left under the name or address the
#    new machines take. K3s refuses an agent on a new machine under an old name ("Node
#    password rejected") until the old Node and its <name>.node-password.k3s secret are gone
#    (k3s-io/k3s pkg/nodepassword; real-behaviour.md). An agent's line carries "@TIME" when
#    its install step found no K3s on the machine (install-k3s.sh stdout: a fresh machine)
#    and ran at TIME. The line stays in the state until the install runs again, so the
#    record keeps the stamp of each fresh machine already handled, and only a stamp not yet
#    recorded is acted on: its agent has not started (agents start after this step), so
#    every Node at its ADDRESS or named NAME is an older machine's, unless it was created
#    after TIME (a record lost and rebuilt: never delete what may be the machine's own). A
#    Node at ADDRESS is deleted with its node password (the fresh machine holds that
#    address now, so whatever that Node reports is past), and one named NAME when it is not
#    Ready. A Ready Node named NAME at another address is a live node whose host name
#    collides with the new machine's: left alone, with a warning. Never fails the step: the
#    join itself then reports a clash.
# 3. Writes the record: every wanted node is a member, with the role, address and pinned host
#    key Pulumi gave it; a member or leaving node that is not wanted is leaving, with the
#    address and key recorded while it was wanted; a removed node whose Node is back (a
#    machine that powered on again, its unit still enabled: issue 17.5) is leaving again. No
#    API write when nothing changed.
# 4. Prints the leaving nodes, "leaving NAME ROLE ADDRESS [TYPE BASE64]" a line (and for one
#    that came back, "# NAME registered again at CREATED", so the printout differs from the
#    one it left with the first time): the stdin of
#    remove-members.sh, which takes them out after every node has started. It prints the same
#    lines whenever nothing has left, so that step does not run again.
#
# stdin (public values; not in the command, whose size must not grow with the cluster):
#   server NAME ADDRESS [TYPE BASE64]            per wanted server
#   agent NAME ADDRESS [TYPE BASE64] [@TIME]     per wanted agent (@TIME: a fresh machine)
# then the line "# k3s-ha: end of nodes". Logs go to stderr.
# Parameters (environment; contracts.RecordMembers, which also sets the step's time bound):
# K3S_HA_CLUSTER (the k3s-ha.io/cluster label value an older release put on its nodes: read
# only while there is no record), and for tests K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# Reads stdin into wanted (NAME -> "ROLE ADDRESS [KEY]"), stamp_of (NAME -> TIME of a fresh
# agent machine) and the fresh machines' names and addresses. Dies on a line that is neither:
# these lines decide which nodes stay.
read_stdin() {
  local line role name address rest stamp end="# k3s-ha: end of nodes"
  while IFS= read -r line; do
    if [[ $line == "$end" ]]; then
      return 0
    fi
    read -r role name address rest <<<"$line"
    stamp=""
    if [[ $role == agent ]]; then
      k3s_ha_split_stamp "$rest"
      stamp=$_k3s_ha_stamp
      rest=$_k3s_ha_unstamped
    fi
    if [[ ! $role =~ ^(server|agent)$ ]] || ! k3s_ha_record_line_ok "member ${name:-} $role ${address:-}${rest:+ $rest}"; then
      k3s_ha_die "stdin line '$(k3s_ha_brief "$line")' is not 'server|agent NAME ADDRESS [TYPE BASE64]' (an agent's may end with @TIME)"
    fi
    if [[ -n ${wanted[$name]:-} ]]; then
      k3s_ha_die "node $name is wanted twice on stdin"
    fi
    wanted[$name]="$role $address${rest:+ $rest}"
    if [[ -n $stamp ]]; then
      stamp_of[$name]=$stamp
    fi
  done
  k3s_ha_die "stdin ended before the line '$end' (cut short?): nothing was changed"
}

# Puts every fresh agent machine whose stamp the record does not hold yet into fresh_at
# (ADDRESS -> NAME) and fresh_named (NAME -> ADDRESS): those are the ones step 2 acts on.
unhandled_fresh_machines() {
  local name address
  for name in "${!stamp_of[@]}"; do
    if [[ ${_k3s_ha_record[$name]:-} == "member agent "*" @${stamp_of[$name]}" ]]; then
      continue # handled by an earlier run, whose stdin had the same line
    fi
    read -r _ address _ <<<"${wanted[$name]}"
    fresh_at[$address]=$name
    fresh_named[$name]=$address
  done
}

# Prints "name|ready|ip|created" for every Node (one API call of at most 30 s).
node_details() {
  k3s_ha_kubectl get nodes -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.addresses[?(@.type=="InternalIP")].address}{"|"}{.metadata.creationTimestamp}{"\n"}{end}' --request-timeout=30s
}

# Usage: evict_stale_agents ROWS   (step 2 of the header; never fails)
evict_stale_agents() {
  local row_name ready ip created owner
  local -A deleted=()
  while IFS='|' read -r row_name ready ip created; do
    [[ -n $row_name && -z ${deleted[$row_name]:-} ]] || continue
    owner=""
    if [[ -n $ip && -n ${fresh_at[$ip]:-} ]]; then
      owner=${fresh_at[$ip]}
    elif [[ -n ${fresh_named[$row_name]:-} ]]; then
      owner=$row_name
    fi
    [[ -n $owner ]] || continue
    created=$(date -u -d "$created" +%s 2>/dev/null) || created=0
    if ((created >= stamp_of[$owner])); then
      continue # registered since the fresh machine's install ran: maybe its own
    elif [[ $ip == "${fresh_named[$owner]}" ]]; then
      k3s_ha_log "node $row_name ($ip, Ready=$ready) belongs to the machine at that address before agent $owner: deleting it and its node password"
    elif [[ $ready == True ]]; then
      k3s_ha_warn "node $row_name is Ready at $ip, but the new machine at ${fresh_named[$owner]} has the same host name: left alone (a live node); rename one of the two, or the new agent's join is refused (Node password rejected)"
      continue
    else
      k3s_ha_log "node $row_name ($ip, Ready=$ready) is the old machine of agent $owner: deleting it and its node password"
    fi
    k3s_ha_forget_node "$row_name" 60
    deleted[$row_name]=1
  done <<<"$1"
}

main() {
  local name state role address rest rows="" row_name created came_back=""
  local -A wanted=() stamp_of=() fresh_at=() fresh_named=() _k3s_ha_record=() registered=()
  exec 3>&1 1>&2
  read_stdin
  if ! k3s_ha_load_record; then
    k3s_ha_die "cannot read the member record on this server ($_k3s_ha_record_error): nothing was changed; run pulumi up again"
  fi
  unhandled_fresh_machines
  if ((${#fresh_named[@]} > 0)) || [[ " ${_k3s_ha_record[*]} " == *"removed "* ]]; then
    if rows=$(node_details 2>&1); then
      evict_stale_agents "$rows"
      while IFS='|' read -r row_name _ _ created; do
        [[ -z $row_name ]] || registered[$row_name]=${created:-unknown}
      done <<<"$rows"
    else
      k3s_ha_warn "could not list the Nodes ($(k3s_ha_brief "$rows")): no stale agent Node evicted, no removed node looked for"
    fi
  fi

  for name in "${!_k3s_ha_record[@]}"; do
    [[ -z ${wanted[$name]:-} ]] || continue
    read -r state role address rest <<<"${_k3s_ha_record[$name]}"
    if [[ $state == removed && -n ${registered[$name]:-} ]]; then
      k3s_ha_warn "node $name was removed from the cluster and has come back (its machine powered on with K3s enabled?): it leaves again"
      state=leaving
      # Its leaving line is the one printed when it left before: this line makes the printout,
      # and so the removals step's input, differ, or Pulumi would not run that step again.
      came_back+="# $name registered again at ${registered[$name]}"$'\n'
    elif [[ $state == member ]]; then
      state=leaving
    fi
    k3s_ha_split_stamp "$rest" # a stamp is a member's (its machine's install), not a leaving node's
    rest=$_k3s_ha_unstamped
    if [[ $state == leaving && -z $rest ]]; then
      rest=$(k3s_ha_legacy_key "$name")
    fi
    _k3s_ha_record[$name]="$state $role $address${rest:+ $rest}"
  done
  for name in "${!wanted[@]}"; do
    _k3s_ha_record[$name]="member ${wanted[$name]}${stamp_of[$name]:+ @${stamp_of[$name]}}"
  done
  k3s_ha_save_record

  {
    printf '%s' "$came_back"
    for name in "${!_k3s_ha_record[@]}"; do
      read -r state rest <<<"${_k3s_ha_record[$name]}"
      if [[ $state == leaving ]]; then
        printf 'leaving %s %s\n' "$name" "$rest"
      fi
    done
  } | LC_ALL=C sort >&3
  k3s_ha_log "${#wanted[@]} nodes are members; those that left the configuration are named for remove-members.sh"
}

main "$@"
