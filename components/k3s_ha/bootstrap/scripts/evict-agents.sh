#!/usr/bin/env bash
# Before any agent starts: removes the Nodes that rebuilt agents' old machines left under the
# name or address the new machines take. K3s refuses an agent on a new machine under an old
# name ("Node password rejected") until the old Node and its <name>.node-password.k3s secret
# are gone (k3s-io/k3s pkg/nodepassword; real-behaviour.md). One step for all agents, on the
# first server: the work a server does for agents does not grow in steps or SSH sessions with
# their number (issue 16), and nothing here SSHes anywhere.
#
# What it knows of each agent comes from that agent's own install step (install-k3s.sh
# stdout): the name K3s registers the machine under, whether K3s ran on it before
# ("running": the same machine, nothing to evict), its boot id and the install's time. That
# line stays in the state until the install step runs again, so "fresh" may be old news on a
# later run (the step runs again whenever any agent's line changes): a Node is this machine's
# own, and never touched, when its bootID is the machine's boot id (the kubelet reports the
# kernel's: Node status.nodeInfo.bootID) or it was created after the install step ran. Any
# other Node of a "fresh" machine at ADDRESS named NAME belongs to an older machine, and is
# deleted with its node password, when
#  - its InternalIP is ADDRESS: the fresh machine holds that address now, so whatever that
#    Node reports (even Ready, for up to the 50 s node-monitor grace period after a re-image)
#    is past, or
#  - it is named NAME and is not Ready (the old machine under this name is gone).
# A Ready Node named NAME at another address is a live node whose host name collides with the
# new machine's: it is left alone with a warning, and the new agent's join is refused until one
# of the two is renamed.
#
# Never fails: with no API on this server it logs why and exits 0; the join itself then
# reports any clash.
#
# stdin: one line per agent, "NAME fresh|running BOOT_ID TIME ADDRESS" (public values; not
# in the command, whose size must not grow with the agents). stdout stays empty (logs go to stderr).
# Parameters (contracts.EvictAgents, which also sets the step's time bound): none; for tests
# K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

evict_kubectl() {
  k3s_ha_kubectl "$@" --request-timeout=30s
}

# Usage: delete_stale NAME WHY
delete_stale() {
  k3s_ha_log "node $1 $2: deleting it and its node password"
  k3s_ha_forget_node "$1" 60
}

# Prints "name|ready|ip|bootID|created" for every Node (one API call of at most 30 s).
agent_rows() {
  evict_kubectl get nodes -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.addresses[?(@.type=="InternalIP")].address}{"|"}{.status.nodeInfo.bootID}{"|"}{.metadata.creationTimestamp}{"\n"}{end}'
}

main() {
  local line name state boot at address rows row_name ready ip row_boot created owner fresh=0
  local -A fresh_at=() fresh_named=() boot_of=() installed_at=() deleted=()
  exec 1>&2
  k3s_ha_never_fail
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    read -r name state boot at address _ <<<"$line"
    if ! k3s_ha_is_node_name "${name:-}" || [[ ! ${at:-} =~ ^[0-9]+$ ]] \
      || [[ ! ${address:-} =~ ^[0-9A-Fa-f.:]+$|^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]]; then
      k3s_ha_warn "stdin line '$(k3s_ha_brief "$line")' is not 'NAME fresh|running BOOT_ID TIME ADDRESS': skipped"
      continue
    fi
    if [[ $state == fresh ]]; then
      fresh_at[$address]=$name
      fresh_named[$name]=$address
      boot_of[$name]=$boot
      installed_at[$name]=$at
      fresh=$((fresh + 1))
    fi
  done
  if ((fresh == 0)); then
    k3s_ha_log "every agent machine ran K3s before: nothing to evict"
    return 0
  fi
  if ! rows=$(agent_rows 2>&1); then
    k3s_ha_log "no cluster API on this server ($(k3s_ha_brief "$rows")): nothing evicted"
    return 0
  fi
  while IFS='|' read -r row_name ready ip row_boot created; do
    [[ -n $row_name && -z ${deleted[$row_name]:-} ]] || continue
    owner=""
    if [[ -n $ip && -n ${fresh_at[$ip]:-} ]]; then
      owner=${fresh_at[$ip]}
    elif [[ -n ${fresh_named[$row_name]:-} ]]; then
      owner=$row_name
    fi
    [[ -n $owner ]] || continue
    created=$(date -u -d "$created" +%s 2>/dev/null) || created=0
    if [[ -n $row_boot && $row_boot == "${boot_of[$owner]}" ]] || ((created >= installed_at[$owner])); then
      continue # the fresh machine's own Node, registered since its install step ran
    elif [[ $ip == "${fresh_named[$owner]}" ]]; then
      delete_stale "$row_name" "($ip, Ready=$ready) belongs to the machine at that address before agent $owner"
      deleted[$row_name]=1
    elif [[ $ready == True ]]; then
      k3s_ha_warn "node $row_name is Ready at $ip, but the new machine at ${fresh_named[$owner]} has the same host name: left alone (a live node); rename one of the two, or the new agent's join is refused (Node password rejected)"
    else
      delete_stale "$row_name" "($ip, Ready=$ready) is the old machine of agent $owner"
      deleted[$row_name]=1
    fi
  done <<<"$rows"
}

main "$@"
