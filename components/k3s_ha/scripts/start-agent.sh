#!/usr/bin/env bash
# Starts (or keeps running) a K3s agent. Agents do not touch etcd membership, so Python
# may run this on all agents in parallel once the servers are up.
#
# stdin: the complete config.yaml (`server:` and `token:`; never echoed).
# Parameters (environment): K3S_READY_TIMEOUT (seconds for restart plus wait, default 600),
# K3S_HA_POLL_SECONDS (default 5), and for tests K3S_HA_CONFIG_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
k3s_ha_require_seconds K3S_READY_TIMEOUT
deadline=$(($(date +%s) + K3S_READY_TIMEOUT))

k3s_ha_write_config "$(k3s_ha_config_dir)/config.yaml"
k3s_ha_start_service k3s-agent "$K3S_READY_TIMEOUT"

# `systemctl restart` already waits for the agent's ready notification; this catches an
# agent that crashed right after it, or one that was "already running" but is not now.
agent_active() {
  local state
  if systemctl is-active --quiet k3s-agent; then
    return 0
  fi
  state=$(systemctl is-active k3s-agent 2>/dev/null) || true
  K3S_HA_WAIT_STATUS="k3s-agent is ${state:-not active}"
  return 1
}

k3s_ha_wait_until "k3s-agent to be active" "$(k3s_ha_seconds_left "$deadline")" agent_active \
  "see journalctl -u k3s-agent"
