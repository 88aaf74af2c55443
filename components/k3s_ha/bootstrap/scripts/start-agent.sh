#!/usr/bin/env bash
# Starts (or keeps running) a K3s agent. Agents do not touch etcd membership, so Python
# may run this on all agents in parallel once the servers are up.
#
# stdin: the complete config.yaml (`server:` and `token:`; never echoed), optionally
# followed by registries.yaml after a separator line (lib.sh k3s_ha_config_split_registries).
# stdout: exactly one line, the node's name as K3s registers it; every log goes to stderr.
# Parameters (environment): K3S_READY_TIMEOUT (seconds from the script's start until the
# agent must be active, restart included; default 600), K3S_VERSION (optional: refuse to
# start unless the installed binary reports exactly this), K3S_HA_NODE_NAME (needed only
# when config.yaml sets node-name), K3S_HA_POLL_SECONDS (default 5), and for tests
# K3S_HA_CONFIG_DIR, K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# Only the node name may reach stdout (fd 3): Python reads it from there.
k3s_ha_begin_start

k3s_ha_config_from_stdin
k3s_ha_config_split_registries
k3s_ha_config_save "$(k3s_ha_config_dir)/config.yaml"
k3s_ha_registries_save "$(k3s_ha_config_dir)/registries.yaml"
k3s_ha_start_service k3s-agent "$K3S_READY_TIMEOUT"

# `systemctl restart` already waits for the agent's ready notification; this catches an
# agent that crashed right after it, or one left alone as "already running" that has
# since stopped.
agent_active() {
  local state
  if systemctl is-active --quiet k3s-agent; then
    return 0
  fi
  state=$(systemctl is-active k3s-agent 2>/dev/null) || true
  K3S_HA_WAIT_STATUS="k3s-agent is ${state:-not active}"
  return 1
}

k3s_ha_wait_until "k3s-agent to be active" "$K3S_READY_TIMEOUT" agent_active \
  "see journalctl -u k3s-agent"
k3s_ha_node_name >&3
