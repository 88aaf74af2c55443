#!/usr/bin/env bash
# Version guard, run on the first server before any node downloads anything: refuses a
# target K3s version the running cluster cannot move to (a downgrade, a skipped minor
# version, or a move from the Dqlite era to embedded etcd, which loses data).
#
# It compares the target with every version it can find: the local `k3s --version` and,
# when the local API answers, every node's kubelet version. The HIGHEST of them guards
# against a downgrade, the LOWEST against a skipped minor and the Dqlite crossing. A node
# without k3s is a fresh node and passes; an API that does not answer is logged and the
# local version alone is checked.
#
# stdin is not read; stdout stays empty (logs go to stderr).
# Parameters (environment; contracts.CheckUpgrade): K3S_VERSION (required, the target, e.g.
# v1.36.4+k3s1), K3S_HA_UPGRADE_FROM (optional: the release every node must run before moving
# to the target's minor), and for tests K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

main() {
  local target local_version k3s_bin out version key
  local lowest="" highest="" lowest_key="" highest_key="" found=() versions=() seen=" "
  exec 1>&2
  k3s_ha_require_param K3S_VERSION
  target=$K3S_VERSION
  if ! k3s_ha_version_key "$target" >/dev/null; then
    k3s_ha_die "K3S_VERSION must look like v1.36.4+k3s1, got '$target'"
  fi

  local_version=$(k3s_ha_installed_version)
  if [[ -z $local_version ]]; then
    k3s_ha_log "no k3s on this node: fresh node, nothing to check $target against"
    return 0
  fi
  found=("$local_version")

  k3s_bin=$(k3s_ha_k3s_bin)
  if out=$("$k3s_bin" kubectl get nodes \
    -o 'jsonpath={.items[*].status.nodeInfo.kubeletVersion}' --request-timeout=10s </dev/null); then
    read -r -a versions <<<"$out"
    for version in "${versions[@]}"; do
      if k3s_ha_version_key "$version" >/dev/null; then
        found+=("$version")
      else
        k3s_ha_warn "ignoring node version '$version': not a K3s release tag"
      fi
    done
  else
    k3s_ha_log "the local API does not answer (see above); checking $target against the local k3s $local_version only"
  fi

  for version in "${found[@]}"; do
    key=$(k3s_ha_version_key "$version") \
      || k3s_ha_die "the local k3s reports version '$version', which is not a K3s release tag"
    if [[ -z $lowest_key || $key < "$lowest_key" ]]; then
      lowest=$version lowest_key=$key
    fi
    if [[ -z $highest_key || $key > "$highest_key" ]]; then
      highest=$version highest_key=$key
    fi
    if [[ $seen != *" $version "* ]]; then
      seen+="$version "
    fi
  done
  k3s_ha_log "k3s versions in the cluster:${seen% }; lowest $lowest, highest $highest; target $target"

  # The highest first, so that a downgrade is reported against the newest node; then the
  # lowest for a skipped minor or a Dqlite crossing, the node that moves furthest.
  if [[ $(k3s_ha_version_key "$target") < "$highest_key" ]]; then
    k3s_ha_check_upgrade "$highest" "$target"
  fi
  # The lowest node also against the minimum source release of the target's minor.
  k3s_ha_check_upgrade "$lowest" "$target" "${K3S_HA_UPGRADE_FROM:-}"
  k3s_ha_check_upgrade "$highest" "$target"
  k3s_ha_log "the cluster may move to k3s $target"
}

main "$@"
