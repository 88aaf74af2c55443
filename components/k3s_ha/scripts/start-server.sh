#!/usr/bin/env bash
# Starts (or keeps running) a K3s server and waits until it is a full member of the
# cluster. The same script serves the first server and every joining server: config.yaml
# alone says which (`cluster-init: true` or `server: https://...:6443`).
#
# stdin: the complete config.yaml (holds the token; never echoed).
# Parameters (environment): K3S_READY_TIMEOUT (seconds from the script's start until
# the server must be ready, restart included; default 600), K3S_VERSION (optional: refuse
# to start unless the installed binary reports exactly this), K3S_HA_NODE_NAME (needed
# only when config.yaml sets node-name), K3S_HA_POLL_SECONDS (default 5), and for tests
# K3S_HA_CONFIG_DIR, K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

K3S_HA_STARTED_AT=$(date +%s)
K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
k3s_ha_require_seconds K3S_READY_TIMEOUT
if [[ -n ${K3S_VERSION:-} ]]; then
  k3s_ha_require_installed_version "$K3S_VERSION"
fi

k3s_ha_write_config "$(k3s_ha_config_dir)/config.yaml"
k3s_ha_start_service k3s "$K3S_READY_TIMEOUT"

k3s_bin=$(k3s_ha_k3s_bin)
node=$(k3s_ha_node_name)

# A value for the timeout message: the first line of what kubectl said, kept short.
brief() {
  local text=${1%%$'\n'*}
  if [[ -z $text ]]; then
    text="<empty>"
  fi
  printf '%s\n' "${text:0:160}"
}

node_condition() {
  local type=$1 out
  if out=$("$k3s_bin" kubectl get node "$node" --request-timeout=10s \
    -o "jsonpath={.status.conditions[?(@.type==\"$type\")].status}" 2>&1); then
    brief "$out"
  else
    brief "error: $out"
  fi
}

# Ready alone is not enough: a joining server is Ready while etcd still holds it as a
# learner, and the next server's join fails if it starts before this one is promoted.
server_ready() {
  local readyz ready voter unmet=()
  if readyz=$("$k3s_bin" kubectl get --raw=/readyz --request-timeout=10s 2>&1); then
    readyz=$(brief "$readyz")
  else
    readyz=$(brief "error: $readyz")
  fi
  ready=$(node_condition Ready)
  voter=$(node_condition EtcdIsVoter)
  [[ $readyz == ok ]] || unmet+=("readyz (last seen: $readyz)")
  [[ $ready == True ]] || unmet+=("Ready (last seen: $ready)")
  [[ $voter == True ]] || unmet+=("EtcdIsVoter (last seen: $voter)")
  if ((${#unmet[@]} == 0)); then
    return 0
  fi
  local item joined=""
  for item in "${unmet[@]}"; do
    joined+="${joined:+; }$item"
  done
  K3S_HA_WAIT_STATUS="not yet satisfied: $joined"
  return 1
}

k3s_ha_wait_until "k3s server $node to be ready (readyz ok, Ready=True, EtcdIsVoter=True)" \
  "$K3S_READY_TIMEOUT" server_ready "see journalctl -u k3s"
