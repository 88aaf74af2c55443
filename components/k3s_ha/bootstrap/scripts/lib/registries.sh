# shellcheck shell=bash
# lib.sh part: registries.yaml.

# --- registries.yaml ------------------------------------------------------------------
# A start script's stdin may carry a second document: config.yaml, then the line
# "--- # k3s-ha: registries.yaml follows", then /etc/rancher/k3s/registries.yaml (which may
# hold registry passwords, so it travels on stdin like the token). bootstrap/node_config.py
# writes that line; a rendered config.yaml never has a line starting with "---".

# After k3s_ha_config_from_stdin: moves the registries.yaml part out of _k3s_ha_config into
# _k3s_ha_registries and sets _k3s_ha_has_registries to 1, or to 0 when stdin had none.
# K3S_HA_WITH_REGISTRIES=1 (a start step's parameter) says stdin must carry one
# (k3s_ha_config_split_part).
# shellcheck disable=SC2154 # _k3s_ha_part, _k3s_ha_has_part: k3s_ha_config_split_part (lib/config.sh)
k3s_ha_config_split_registries() {
  k3s_ha_config_split_part '--- # k3s-ha: registries.yaml follows' "${K3S_HA_WITH_REGISTRIES:-0}" \
    "stdin ended after config.yaml although a registries.yaml was to follow (cut short?): nothing was written; run pulumi up again"
  _k3s_ha_registries=$_k3s_ha_part
  _k3s_ha_has_registries=$_k3s_ha_has_part
}

# Usage: k3s_ha_registries_save PATH
# After k3s_ha_config_save: writes _k3s_ha_registries to PATH like config.yaml (atomic, 0600)
# when stdin carried one; otherwise removes PATH if k3s-ha wrote it (its first line is the
# header node_config.py puts there) and leaves a file written by hand alone. K3s reads the
# file only when it starts, so _k3s_ha_config_changed ends up 1 when either file changed.
k3s_ha_registries_save() {
  local path=$1 config_changed=${_k3s_ha_config_changed:-0} first=""
  if ((${_k3s_ha_has_registries:-0})); then
    k3s_ha_write_config "$path" < <(printf '%s' "$_k3s_ha_registries")
  else
    _k3s_ha_config_changed=0
    if [[ -f $path ]]; then
      IFS= read -r first <"$path" || true
    fi
    if [[ $first == "# Written by k3s-ha from the registries input;"* ]]; then
      rm -f -- "$path" || k3s_ha_die "could not remove $path"
      k3s_ha_log "removed $path (no registries given any more)"
      _k3s_ha_config_changed=1
    fi
  fi
  if ((config_changed)); then
    _k3s_ha_config_changed=1
  fi
}
