#!/usr/bin/env bash
# Prints the admin kubeconfig that k3s wrote on this server. The only script whose stdout
# is a secret: Python marks the output secret and turns output logging off for it.
#
# stdin is not read. Parameters (contracts.PrintKubeconfig): none; for tests
# K3S_HA_CONFIG_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

kubeconfig=$(k3s_ha_config_dir)/k3s.yaml
if [[ ! -s $kubeconfig ]]; then
  k3s_ha_die "$kubeconfig does not exist or is empty: k3s writes it when the server starts; see journalctl -u k3s"
fi
cat -- "$kubeconfig" || k3s_ha_die "could not read $kubeconfig"
