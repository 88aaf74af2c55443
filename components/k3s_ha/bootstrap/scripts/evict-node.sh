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
# Never fails: with no API on this server (the first `up`, before it started) or no answer
# over SSH it logs why and exits 0; the join itself then reports any clash.
#
# stdin: the SSH private key Pulumi logs in with (only ever in an ssh-agent started for this
# run). stdout stays empty (logs go to stderr).
# Parameters (environment): K3S_HA_ADDRESS (the host's private address), K3S_ROLE
# (server|agent), K3S_HA_SSH_USER, K3S_HA_SSH_TIMEOUT (default 10), and for tests K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

ROWS='jsonpath={range .items[*]}{.metadata.name}{"|"}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'

evict_stop_agent() {
  if [[ -n ${SSH_AGENT_PID:-} ]]; then
    ssh-agent -k >/dev/null 2>&1 || true
  fi
}

evict_kubectl() {
  "$(k3s_ha_k3s_bin)" kubectl "$@" --request-timeout=30s </dev/null
}

main() {
  local address=${K3S_HA_ADDRESS:-} role=${K3S_ROLE:-} user=${K3S_HA_SSH_USER:-} unit key answer
  local new_name active rows name ip ssh_timeout=${K3S_HA_SSH_TIMEOUT:-10}
  exec 1>&2
  k3s_ha_never_fail
  case $role in
    server) unit=k3s ;;
    agent) unit=k3s-agent ;;
    *) k3s_ha_die "K3S_ROLE must be server or agent, got '$role'" ;;
  esac
  [[ $address =~ ^[0-9A-Fa-f.:]+$|^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]] \
    || k3s_ha_die "K3S_HA_ADDRESS must be an address, got '$address'"
  [[ $user =~ ^[a-z_][a-z0-9_.-]*$ ]] || k3s_ha_die "K3S_HA_SSH_USER must be a login name, got '$user'"
  k3s_ha_require_seconds ssh_timeout
  if ! rows=$(evict_kubectl get nodes -o "$ROWS" 2>&1); then
    k3s_ha_log "no cluster API on this server yet ($(k3s_ha_brief "$rows")): nothing to evict"
    return 0
  fi
  key=$(cat)
  [[ -n $key ]] || k3s_ha_die "the SSH private key must arrive on stdin"
  eval "$(ssh-agent -s)" >/dev/null || k3s_ha_die "could not start ssh-agent"
  trap 'evict_stop_agent; k3s_ha_exit_zero' EXIT
  printf '%s\n' "$key" | ssh-add -q - >/dev/null 2>&1 || k3s_ha_die "ssh-add refused the SSH private key"
  if ! answer=$(timeout "$((ssh_timeout + 30))" ssh -n -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o "ConnectTimeout=$ssh_timeout" "$user@$address" \
    "hostname; systemctl is-active $unit || true"); then
    k3s_ha_log "$address does not answer SSH from this server: nothing evicted"
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
