#!/usr/bin/env bash
# Before a host's new machine joins (its `replace_on` changed): removes the Node the old
# machine left, when the new one would take its name or address. K3s refuses a new machine
# under an old name ("Node password rejected", or "duplicate node name found" for a server,
# k3s-io/k3s#10408) until the old Node and its <name>.node-password.k3s secret are gone
# (real-behaviour.md). Runs on a server that is already a member; the cluster-side removal of
# nodes that simply left is reconcile-members.sh.
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
# accepting any key, with a warning (README, "Accepted risks": unpinned hosts).
#
# Never fails: with no API on this server (the first `up`, before it started) or no answer
# over SSH it logs why and exits 0; the join itself then reports any clash.
#
# stdin: the SSH private key Pulumi logs in with (only ever in an ssh-agent started for this
# run). stdout stays empty (logs go to stderr).
# Parameters (environment): K3S_HA_ADDRESS (the host's private address), K3S_ROLE
# (server|agent), K3S_HA_HOST (the host's name in the configuration, for messages),
# K3S_HA_HOST_KEY (its pinned SSH host key, "TYPE BASE64", public; empty: none),
# K3S_HA_SSH_USER, K3S_HA_SSH_TIMEOUT (default 10), K3S_HA_STEP_TIMEOUT (seconds for the
# whole step, default K3S_HA_SSH_TIMEOUT + 450: the node list and one SSH command of 30 s
# each, up to two stale Nodes (by name and by address) of 180 s each to delete with their
# secrets, 30 s to spare; when it runs out the step still succeeds), and for tests
# K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

ROWS='jsonpath={range .items[*]}{.metadata.name}{"|"}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'

evict_kubectl() {
  k3s_ha_kubectl "$@" --request-timeout=30s
}

main() {
  local address=${K3S_HA_ADDRESS:-} role=${K3S_ROLE:-} host=${K3S_HA_HOST:-${K3S_HA_ADDRESS:-}}
  local unit answer new_name active rows name ip
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
  k3s_ha_bound_step "${K3S_HA_STEP_TIMEOUT:-$((K3S_HA_SSH_TIMEOUT + 450))}"
  if ! rows=$(evict_kubectl get nodes -o "$ROWS" 2>&1); then
    k3s_ha_log "no cluster API on this server yet ($(k3s_ha_brief "$rows")): nothing to evict"
    return 0
  fi
  k3s_ha_load_ssh_key
  if [[ -z ${K3S_HA_HOST_KEY:-} ]]; then
    k3s_ha_warn "host $host has no pinned SSH host key: SSH to $address accepts whatever host key answers there (README, Accepted risks: unpinned hosts)"
  elif ! k3s_ha_pin_host_key "$address" "$K3S_HA_HOST_KEY"; then
    k3s_ha_die "K3S_HA_HOST_KEY must be an SSH public host key (TYPE BASE64), got '$K3S_HA_HOST_KEY'"
  fi
  if ! k3s_ha_ssh "$address" "$((K3S_HA_SSH_TIMEOUT + 30))" "hostname; systemctl is-active $unit || true" answer; then
    if k3s_ha_ssh_refused_host_key; then
      k3s_ha_warn "$address answers SSH with another host key than the one pinned for host $host: whatever answers there is not that host; nothing evicted"
    else
      k3s_ha_log "$address does not answer SSH from this server: nothing evicted"
    fi
    return 0
  fi
  new_name=${answer%%$'\n'*}
  new_name=${new_name,,}
  active=${answer#*$'\n'}
  if [[ $active == active ]]; then
    k3s_ha_log "$unit already runs on $address: it is the same machine, nothing to evict"
    return 0
  fi
  while IFS='|' read -r name ip; do
    [[ -n $name ]] || continue
    if [[ $name == "$new_name" || $ip == "$address" ]]; then
      k3s_ha_log "node $name ($ip) belongs to the machine $address had before: deleting it and its node password"
      evict_kubectl delete node "$name" --wait=true --timeout=120s || k3s_ha_warn "could not delete node $name"
      evict_kubectl -n kube-system delete secret "$name.node-password.k3s" --ignore-not-found \
        || k3s_ha_warn "could not delete secret $name.node-password.k3s"
    fi
  done <<<"$rows"
}

main "$@"
