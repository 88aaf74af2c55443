#!/usr/bin/env bash
# Confirms from the server side that a node has joined: waits until the local API shows
# node K3S_HA_NODE with condition Ready=True. Runs on a server, e.g. for an agent.
#
# stdin is not read; stdout stays empty (logs go to stderr).
# Parameters (environment; contracts.ConfirmNode): K3S_HA_NODE (required, the node's name),
# K3S_READY_TIMEOUT (seconds, default 600), K3S_HA_POLL_SECONDS (default 5), and for tests
# K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

main() {
  exec 1>&2
  K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
  k3s_ha_require_seconds K3S_READY_TIMEOUT
  _k3s_ha_started_at=$(date +%s)
  k3s_ha_require_param K3S_HA_NODE
  if ! k3s_ha_is_node_name "$K3S_HA_NODE"; then
    k3s_ha_die "K3S_HA_NODE must be a Kubernetes node name, got '$K3S_HA_NODE'"
  fi
  if [[ ! -x $(k3s_ha_k3s_bin) ]]; then
    k3s_ha_die "$(k3s_ha_k3s_bin) does not exist: k3s is not installed on this server"
  fi
  _k3s_ha_wait_node=$K3S_HA_NODE
  k3s_ha_wait_until "node $K3S_HA_NODE to be Ready" "$K3S_READY_TIMEOUT" k3s_ha_node_ready \
    "check k3s on that node (journalctl -u k3s-agent, or -u k3s on a server)"
}

main "$@"
