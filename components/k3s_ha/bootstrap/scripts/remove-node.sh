#!/usr/bin/env bash
# Takes a leaving node out of the cluster, from a server that stays: drain, then
# `kubectl delete node`, which also removes a server's etcd member (k3s member controller)
# and its node password, so that a new machine can come back under the same name or
# address. Uninstalling on the node itself is uninstall-k3s.sh, run after this.
#
# Runs while something is being destroyed, so it never fails: every problem is a warning
# and the exit status is 0.
#
# stdin is not read; stdout stays empty (logs and kubectl's output go to stderr).
# Parameters (environment): K3S_HA_NODE (the node's name), K3S_DRAIN_TIMEOUT (seconds,
# default 120), K3S_HA_STEP_TIMEOUT (seconds for the whole step, default the drain timeout
# + 240), and for tests K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

main() {
  local node=${K3S_HA_NODE:-} drain_timeout=${K3S_DRAIN_TIMEOUT:-120} k3s_bin out status=0
  local by_hand
  exec 1>&2
  k3s_ha_never_fail
  if [[ $drain_timeout =~ ^[0-9]+$ ]] && ((10#$drain_timeout > 0)); then
    k3s_ha_bound_step "${K3S_HA_STEP_TIMEOUT:-$((10#$drain_timeout + 240))}"
  else
    k3s_ha_bound_step "${K3S_HA_STEP_TIMEOUT:-360}"
  fi
  if ! k3s_ha_is_node_name "$node"; then
    k3s_ha_warn "K3S_HA_NODE must be a Kubernetes node name, got '$node': nothing removed"
    return 0
  fi
  by_hand="if the cluster still lists node $node, run kubectl drain and kubectl delete node $node by hand"
  if [[ ! $drain_timeout =~ ^[0-9]+$ ]] || ((10#$drain_timeout == 0)); then
    k3s_ha_warn "K3S_DRAIN_TIMEOUT must be a positive whole number of seconds, got '$drain_timeout'; using 120"
    drain_timeout=120
  fi
  drain_timeout=$((10#$drain_timeout))
  k3s_bin=$(k3s_ha_k3s_bin)
  if [[ ! -x $k3s_bin ]]; then
    k3s_ha_warn "k3s is not installed on this server: node $node was not removed; $by_hand"
    return 0
  fi

  out=$("$k3s_bin" kubectl get node "$node" -o name --request-timeout=10s </dev/null 2>&1) || status=$?
  if ((status != 0)); then
    if [[ $out == *"(NotFound)"* ]]; then
      k3s_ha_log "node $node is already gone from the cluster; nothing to remove"
    else
      k3s_ha_warn "the API on this server does not answer ($(k3s_ha_brief "$out")): node $node was not removed; $by_hand"
    fi
    return 0
  fi

  k3s_ha_log "draining node $node (up to ${drain_timeout}s)"
  if ! timeout --foreground "$((drain_timeout + 30))" "$k3s_bin" kubectl drain "$node" --ignore-daemonsets \
    --delete-emptydir-data --force "--timeout=${drain_timeout}s" </dev/null; then
    k3s_ha_warn "draining node $node failed or timed out; deleting it anyway"
  fi
  if timeout --foreground 90 "$k3s_bin" kubectl delete node "$node" --timeout=60s </dev/null; then
    k3s_ha_log "deleted node $node (k3s also removes its etcd member if it was a server)"
  else
    k3s_ha_warn "could not delete node $node: run kubectl delete node $node by hand before a machine joins under this name or address, or that join fails with 'Peer URLs already exists' or 'Node password rejected'"
  fi
}

main "$@"
