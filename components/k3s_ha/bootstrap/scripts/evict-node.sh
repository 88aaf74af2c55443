#!/usr/bin/env bash
# Before a host's new machine joins (its `replace_on` changed): removes the Node the old
# machine left, when the new one would take its name or address. K3s refuses a new machine
# under an old name ("Node password rejected", or "duplicate node name found" for a server,
# k3s-io/k3s#10408) until the old Node and its <name>.node-password.k3s secret are gone
# (real-behaviour.md). Runs on a server that is already a member; the cluster-side removal of
# nodes that simply left is remove-members.sh.
#
# Before a server joins, it also removes the DEAD servers of this cluster. etcd refuses
# every member add, a learner's too, unless the member that takes it is connected to all
# voting members (etcd server/etcdserver/server.go mayAddMember, StrictReconfigCheck, on by
# default: embed.NewConfig DefaultStrictReconfigCheck): "rejecting member add request;
# local member has not been connected to all peers, reconfigure breaks active quorum", and
# K3s reports "ETCD join failed: etcdserver: unhealthy cluster". K3s does not turn the check
# off (the etcd config it writes, k3s-io/k3s pkg/daemons/executor/executor.go ETCDConfig,
# has no strict-reconfig-check field and is loaded over embed's defaults). That is etcd 3.4
# and 3.5 (isConnectedFullySince), i.e. K3s releases that embed those; later server.go only
# asks that a quorum stays connected (isConnectedToQuorumAfterAddingNewMemberSince; K3s's
# main branch embeds etcd 3.7, go.mod), where the removal is still right but no longer
# needed for the join. So while a dead server is still a voter, no server can join on those
# releases: not the new machine that replaces it, not a new server of a scale-out. The
# removal of nodes that left (remove-members.sh) runs after every start: too late. A server
# of this cluster is dead when the member record (lib.sh; kube-system/k3s-ha-members, or an
# older release's k3s-ha.io/cluster labels while there is none) names it a server, its Node
# has the etcd role and is not Ready (K3s shows Unknown 50 s after a node dies: the
# node-monitor grace period), and SSH to its recorded address fails with its recorded host
# key pinned (an address that answers with another key, or under another host name, counts
# as unreachable: lib.sh k3s_ha_reach_node, the same decision remove-members.sh takes). Its Node is deleted (K3s removes its etcd member with it,
# member_controller.go onRemove) with its <name>.node-password.k3s secret, one at a time. A
# node that is Ready, or answers, is never touched, nor one at the address being evicted for
# (that is the stale-node case above). A server dead for less than about 40 s still looks
# Ready: the join fails until it is NotReady, and running `up` again then goes through.
# Agents' joins do not touch etcd, so an agent's evict removes no other node.
#
# Over SSH it reads the new machine's node name (its lower-cased host name, as K3s registers
# it) and whether K3s runs there. The Nodes named so, or whose InternalIP is the host's
# address, are stale when K3s does not run on the machine now at that address: they are
# deleted with their node-password secret. If K3s runs there (the same machine, only its
# `replace_on` changed) nothing is touched.
#
# What answers there decides which Nodes are deleted, so it must be the host: with the host's
# pinned key (K3S_HA_HOST_KEY) SSH accepts only that key, and an address that answers with
# another one is treated like one that does not answer (nothing is evicted; an impostor could
# otherwise name a live node as its own). A host without a pinned key is reached as before,
# accepting any key, with a warning (docs/security.md, "Accepted risks": unpinned hosts).
#
# Never fails: with no API on this server (the first `up`, before it started) or no answer
# over SSH it logs why and exits 0; the join itself then reports any clash.
#
# stdin: the SSH private key Pulumi logs in with (only ever in an ssh-agent started for this
# run). stdout stays empty (logs go to stderr).
# Parameters (environment): K3S_HA_ADDRESS (the host's private address), K3S_ROLE
# (server|agent), K3S_HA_CLUSTER (the k3s-ha.io/cluster label value an older release put on
# this cluster's nodes: read only while there is no member record), K3S_HA_HOST (the host's name in
# the configuration, for messages), K3S_HA_HOST_KEY (its pinned SSH host key, "TYPE
# BASE64", public; empty: none), K3S_HA_SSH_USER, K3S_HA_SSH_TIMEOUT (default 10), and for
# tests K3S_HA_BIN_DIR (contracts.EvictNode, which also sets the step's time bound; when it
# runs out the step still succeeds).
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# Usage: suspects ROWS   (with the member record loaded)
# Prints "name|address|key" of this cluster's servers (the record's members and leaving nodes
# with the server role) that may be dead: their Node is listed and not Ready, and neither it
# nor the record puts them at K3S_HA_ADDRESS.
suspects() {
  local name etcd ready ip state role address key
  while IFS='|' read -r name etcd ready ip _; do
    [[ -n $name && $etcd == true && $ready != True && -n ${_k3s_ha_record[$name]:-} ]] || continue
    read -r state role address key <<<"${_k3s_ha_record[$name]}"
    [[ $state != removed && $role == server && $ip != "$K3S_HA_ADDRESS" && $address != "$K3S_HA_ADDRESS" ]] || continue
    printf '%s|%s|%s\n' "$name" "$address" "${key:-$(k3s_ha_legacy_key "$name")}"
  done <<<"$1"
}

# Usage: remove_dead_servers ROWS   (after k3s_ha_load_ssh_key)
# Deletes the Node and node password of every server of this cluster in ROWS that is not
# Ready and cannot be reached at its recorded address with its recorded key, one at a time
# (see the header: etcd refuses a join while one is a voter), and adds their names to main's
# `removed`.
remove_dead_servers() {
  local name ip key found
  local -A _k3s_ha_record=()
  if ! k3s_ha_load_record; then
    k3s_ha_warn "cannot read the member record ($_k3s_ha_record_error): dead servers are not looked for"
    return 0
  fi
  found=$(suspects "$1")
  if [[ -z $found ]]; then
    k3s_ha_log "every server of the cluster is Ready: none to remove before this server joins"
    return 0
  fi
  while IFS='|' read -r name ip key; do
    if k3s_ha_reach_node "$name" "$ip" true "$key"; then
      k3s_ha_log "server $name ($ip) is not Ready but answers SSH: left alone"
      continue
    fi
    k3s_ha_log "server $name ($ip) is NotReady and $_k3s_ha_unreachable: it is dead, and etcd refuses any join while it is a voter; deleting its Node (K3s removes its etcd member) and its node password"
    k3s_ha_forget_node "$name" 120
    removed+=("$name")
  done <<<"$found"
}

main() {
  local address=${K3S_HA_ADDRESS:-} role=${K3S_ROLE:-} host=${K3S_HA_HOST:-${K3S_HA_ADDRESS:-}}
  local unit answer new_name active rows name ip _etcd ready _label removed=()
  exec 1>&2
  k3s_ha_never_fail
  case $role in
    server) unit=k3s ;;
    agent) unit=k3s-agent ;;
    *) k3s_ha_die "K3S_ROLE must be server or agent, got '$role'" ;;
  esac
  [[ $address =~ ^[0-9A-Fa-f.:]+$|^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]] \
    || k3s_ha_die "K3S_HA_ADDRESS must be an address, got '$address'"
  k3s_ha_require_ssh_params
  if ! rows=$(k3s_ha_node_rows 2>&1); then
    k3s_ha_log "no cluster API on this server yet ($(k3s_ha_brief "$rows")): nothing to evict"
    return 0
  fi
  k3s_ha_load_ssh_key
  if [[ $role == server ]]; then
    remove_dead_servers "$rows"
  fi
  if [[ -z ${K3S_HA_HOST_KEY:-} ]]; then
    k3s_ha_warn "host $host has no pinned SSH host key: SSH to $address accepts whatever host key answers there (docs/security.md, Accepted risks: unpinned hosts)"
  elif ! k3s_ha_pin_host_key "$address" "$K3S_HA_HOST_KEY"; then
    k3s_ha_die "K3S_HA_HOST_KEY must be an SSH public host key (TYPE BASE64), got '$K3S_HA_HOST_KEY'"
  fi
  # One marked line, so a login banner or a profile script's output cannot pass for the answer.
  if ! k3s_ha_ssh "$address" "$((K3S_HA_SSH_TIMEOUT + 30))" "echo \"k3s-ha-probe \$(hostname) \$(systemctl is-active $unit 2>/dev/null)\"" answer; then
    if k3s_ha_ssh_refused_host_key; then
      k3s_ha_warn "$address answers SSH with another host key than the one pinned for host $host: whatever answers there is not that host; nothing evicted"
    else
      k3s_ha_log "$address does not answer SSH from this server: nothing evicted"
    fi
    return 0
  fi
  answer=$(grep '^k3s-ha-probe ' <<<"$answer" | tail -n 1) || true
  read -r _ new_name active _ <<<"$answer"
  new_name=${new_name,,}
  case $active in
    inactive | failed) ;;
    active | activating | reloading | deactivating)
      k3s_ha_log "$unit already runs on $address: it is the same machine, nothing to evict"
      return 0
      ;;
    *)
      # Evicting on a guess deletes live Nodes (a server's etcd member with it): a probe
      # that could not ask systemd must change nothing.
      k3s_ha_warn "could not tell whether $unit runs on $address (host name '${new_name:-}', systemctl is-active said '${active:-nothing}'): nothing evicted"
      return 0
      ;;
  esac
  if [[ ! $new_name =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]]; then
    k3s_ha_warn "$address reported the host name '$new_name', which no Node can have: nothing evicted"
    return 0
  fi
  while IFS='|' read -r name _etcd ready ip _label; do
    # A dead server that kept its host name on the new machine is gone already.
    [[ -n $name && " ${removed[*]} " != *" $name "* ]] || continue
    if [[ $name == "$new_name" && $ip != "$address" && $ready == True ]]; then
      # issue 17.4: a hostname collision, not a stale Node. For a server it is a live etcd
      # member; deleting it would take that server out of the cluster.
      k3s_ha_warn "node $name is Ready at $ip, another address than $address, whose new machine has the same host name: left alone (a live node); rename one of the two, or the join is refused (duplicate node name / Node password rejected)"
      continue
    fi
    if [[ $name == "$new_name" || $ip == "$address" ]]; then
      k3s_ha_log "node $name ($ip) belongs to the machine $address had before: deleting it and its node password"
      k3s_ha_forget_node "$name" 120
    fi
  done <<<"$rows"
}

main "$@"
