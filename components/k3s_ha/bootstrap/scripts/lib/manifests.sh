# shellcheck shell=bash
# lib.sh part: the manifests k3s-ha puts into a server's auto-deploy directory.

# --- DATA_DIR/server/manifests/k3s-ha.yaml --------------------------------------------
# A server's stdin may end with one more document: after config.yaml (and registries.yaml),
# the line "--- # k3s-ha: manifests follow", then Kubernetes objects as multi-document YAML
# (bootstrap/node_config.py). K3s applies every file in DATA_DIR/server/manifests at start
# and whenever one changes on disk, like `kubectl apply` (docs.k3s.io installation/packaged-components,
# "Auto-Deploying Manifests"; pkg/deploy/controller.go watches the directory), so writing
# the file needs no restart.

# After k3s_ha_config_from_stdin and before k3s_ha_config_split_registries: moves the
# manifests part into _k3s_ha_manifests and sets _k3s_ha_has_manifests (1 or 0).
# K3S_HA_WITH_MANIFESTS=1 says stdin must carry them (k3s_ha_config_split_part).
# shellcheck disable=SC2154 # _k3s_ha_part, _k3s_ha_has_part: k3s_ha_config_split_part (lib/config.sh)
k3s_ha_config_split_manifests() {
  k3s_ha_config_split_part '--- # k3s-ha: manifests follow' "${K3S_HA_WITH_MANIFESTS:-0}" \
    "stdin ended before the manifests that were to follow (cut short?): nothing was written; run pulumi up again"
  _k3s_ha_manifests=$_k3s_ha_part
  _k3s_ha_has_manifests=$_k3s_ha_has_part
}

# Usage: k3s_ha_manifests_save PATH
# Writes _k3s_ha_manifests to PATH (atomic, 0600) when stdin carried them; otherwise removes
# PATH if k3s-ha wrote it (its first line is the header node_config.py puts there). Removing
# the file does not remove what K3s deployed from it: K3s keeps the objects (docs/aws.md
# says how to delete them). Leaves _k3s_ha_config_changed as it was: K3s picks the file up
# while it runs, so it is never a reason to restart.
k3s_ha_manifests_save() {
  local path=$1 config_changed=${_k3s_ha_config_changed:-0} first=""
  if ((${_k3s_ha_has_manifests:-0})); then
    # Before K3s's first start nothing of DATA_DIR/server exists yet; K3s makes it 0700 when it
    # creates it, and keeps whatever mode it finds.
    (umask 077 && mkdir -p -- "$(dirname -- "$path")") || k3s_ha_die "could not create $(dirname -- "$path")"
    k3s_ha_write_config "$path" < <(printf '%s' "$_k3s_ha_manifests")
  elif [[ -f $path ]]; then
    IFS= read -r first <"$path" || true
    if [[ $first == "# Written by k3s-ha from the manifests input;"* ]]; then
      rm -f -- "$path" || k3s_ha_die "could not remove $path"
      k3s_ha_log "removed $path (no manifests given any more; what K3s deployed from it stays)"
    fi
  fi
  _k3s_ha_config_changed=$config_changed
}
