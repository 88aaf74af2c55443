#!/usr/bin/env bash
# Starts (or keeps running) a K3s agent. Agents do not touch etcd membership, so Python
# may run this on all agents in parallel once the servers are up.
#
# stdin: the complete config.yaml (`server:` and `token:`; never echoed), optionally
# followed by registries.yaml after a separator line (lib.sh k3s_ha_config_split_registries);
# stdin ends with the end marker line (k3s_ha_config_end_marker); without it nothing is written.
# stdout: exactly one line, the node's name as K3s registers it; every log goes to stderr.
# Parameters (environment; contracts.StartAgent): K3S_HA_DATA_DIR (K3s's data dir, as the
# config.yaml on stdin sets it: Python passes it rather than have this script parse the YAML
# back; default /var/lib/rancher/k3s), K3S_HA_WITH_REGISTRIES (1: stdin must carry a registries.yaml),
# K3S_HA_WAIT_CLOUD_INIT (1: wait until the cloud controller manager has initialised the
# node, lib.sh k3s_ha_check_cloud_initialized), K3S_READY_TIMEOUT (seconds from the script's start until the
# agent must be up, restart included; default 600), K3S_VERSION (optional: refuse to start
# unless the installed binary reports exactly this, restart a node that runs another, and
# wait until the node runs it), K3S_HA_NODE_NAME (needed only when config.yaml sets
# node-name), K3S_HA_POLL_SECONDS (default 5), and for tests K3S_HA_CONFIG_DIR,
# K3S_HA_BIN_DIR.
#
# An agent has no admin kubeconfig: it reads its own Node with the kubelet's credentials
# (DATA_DIR/agent/kubelet.kubeconfig, see k3s_ha_kubectl in lib.sh) to learn the version
# it runs and whether the kubelet has reported Ready since the restart.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# Bounds the step; only the node name may reach stdout (fd 3): Python reads it from there.
k3s_ha_begin_start

k3s_ha_config_from_stdin
k3s_ha_config_split_registries
k3s_ha_config_save "$(k3s_ha_config_dir)/config.yaml"
k3s_ha_registries_save "$(k3s_ha_config_dir)/registries.yaml"
node=$(k3s_ha_node_name)
K3S_HA_KUBECONFIG=$(k3s_ha_data_dir)/agent/kubelet.kubeconfig
k3s_ha_start_service k3s-agent "$K3S_READY_TIMEOUT" "$node"

# `systemctl restart` already waits for the agent's ready notification; this catches an
# agent that crashed right after it, or one left alone as "already running" that has
# since stopped, and waits for what the kubelet reports after the restart.
agent_up() {
  local state
  _k3s_ha_unmet=()
  if ! systemctl is-active --quiet k3s-agent; then
    state=$(systemctl is-active k3s-agent 2>/dev/null) || true
    _k3s_ha_unmet+=("k3s-agent is ${state:-not active}")
  fi
  k3s_ha_check_node_after_restart
  k3s_ha_report_unmet
}

_k3s_ha_wait_node=$node
k3s_ha_wait_until "k3s-agent to be up (active, Ready=True${K3S_VERSION:+, running $K3S_VERSION})" \
  "$K3S_READY_TIMEOUT" agent_up "see journalctl -u k3s-agent"
printf '%s\n' "$node" >&3
