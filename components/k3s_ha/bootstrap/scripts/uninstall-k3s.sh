#!/usr/bin/env bash
# Uninstalls K3s on a leaving node (after remove-node.sh took it out of the cluster) with
# the uninstall script the K3s installer left: k3s-uninstall.sh on a server,
# k3s-agent-uninstall.sh on an agent. It never touches cluster membership.
#
# Runs while something is being destroyed (the machine is usually terminated next), so it
# never fails: every problem is a warning and the exit status is 0.
#
# stdin is not read; stdout stays empty (logs and the uninstaller's output go to stderr).
# Parameters (environment): K3S_ROLE (server|agent), K3S_HA_STEP_TIMEOUT (seconds for the
# whole step, default 360), and for tests K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

main() {
  local role=${K3S_ROLE:-} name uninstaller status=0
  exec 1>&2
  k3s_ha_never_fail
  k3s_ha_bound_step "${K3S_HA_STEP_TIMEOUT:-360}"
  case $role in
    server) name=k3s-uninstall.sh ;;
    agent) name=k3s-agent-uninstall.sh ;;
    *)
      k3s_ha_warn "K3S_ROLE must be server or agent, got '$role': nothing uninstalled"
      return 0
      ;;
  esac
  uninstaller=${K3S_HA_BIN_DIR:-/usr/local/bin}/$name
  if [[ ! -e $uninstaller ]]; then
    k3s_ha_log "k3s is not installed here ($uninstaller does not exist); nothing to uninstall"
    return 0
  fi
  k3s_ha_log "uninstalling k3s ($role) with $uninstaller"
  timeout 300 "$uninstaller" </dev/null || status=$?
  if ((status == 124)); then
    k3s_ha_warn "$uninstaller did not finish within 300s; k3s may be partly installed still"
  elif ((status != 0)); then
    k3s_ha_warn "$uninstaller failed (exit $status); k3s may be partly installed still"
  else
    k3s_ha_log "uninstalled k3s ($role)"
  fi
}

main "$@"
