# shellcheck shell=bash
# lib.sh part: K3s release tags and which upgrades are safe.

# --- versions ------------------------------------------------------------------------

# Usage: k3s_ha_version_fields TAG
# Prints "MAJOR MINOR PATCH K3S RC" for a K3s release tag (v1.36.4+k3s1, v1.30.0-rc1+k3s1,
# v1.17.0+k3s.1, v1.0.1): a missing +k3sN counts as 0, and a release as RC 999999999, after
# its release candidates. Fails for anything else.
k3s_ha_version_fields() {
  local pattern='^v([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(-rc([0-9]{1,9}))?(\+k3s\.?([0-9]{1,9}))?$'
  [[ $1 =~ $pattern ]] || return 1
  printf '%d %d %d %d %d\n' "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))" \
    "$((10#${BASH_REMATCH[3]}))" "$((10#${BASH_REMATCH[7]:-0}))" "$((10#${BASH_REMATCH[5]:-999999999}))"
}

# Usage: k3s_ha_version_key TAG
# Prints a fixed-width key: comparing two keys as strings compares the releases (major,
# minor, patch, then k3s revision, then release candidate). Fails unless TAG is a tag.
k3s_ha_version_key() {
  local fields
  fields=$(k3s_ha_version_fields "$1") || return 1
  local -a f
  read -r -a f <<<"$fields"
  printf '%09d%09d%09d%09d%09d\n' "${f[@]}"
}

# Usage: k3s_ha_check_upgrade FROM TO [MINIMUM]
# Returns 0 when a node (or cluster) on K3s FROM may move to TO: FROM empty (nothing
# installed), the same tag, or an upgrade K3s supports. Dies, naming both versions and
# the way out, on a downgrade, a skipped minor version (docs/upgrades/manual.md), a
# move from the Dqlite era (before v1.19.1) to embedded etcd, or a move into TO's minor from
# a release below MINIMUM, the release every node must run first (K3S_HA_UPGRADE_FROM, from
# versions.py UPGRADE_PREREQUISITES: e.g. v1.33.7+k3s3, whose etcd 3.5.26 etcd 3.6 needs).
k3s_ha_check_upgrade() {
  local from=$1 to=$2 minimum=${3:-} from_key to_key dqlite_end minimum_key
  local -a f t
  if [[ -z $from || $from == "$to" ]]; then
    return 0
  fi
  from_key=$(k3s_ha_version_key "$from") \
    || k3s_ha_die "cannot check the move from k3s '$from' to $to: '$from' is not a K3s release tag"
  to_key=$(k3s_ha_version_key "$to") \
    || k3s_ha_die "cannot check the move from k3s $from to '$to': '$to' is not a K3s release tag"
  read -r -a f <<<"$(k3s_ha_version_fields "$from")"
  read -r -a t <<<"$(k3s_ha_version_fields "$to")"
  if [[ $to_key < "$from_key" ]]; then
    k3s_ha_die "refusing to downgrade k3s from $from to $to: K3s does not support downgrades (docs/upgrades/manual.md); set the version to $from or newer"
  fi
  dqlite_end=$(k3s_ha_version_key v1.19.1)
  if [[ ${from_key:0:27} < "${dqlite_end:0:27}" && ! ${to_key:0:27} < "${dqlite_end:0:27}" ]]; then
    k3s_ha_die "refusing to upgrade k3s from $from to $to: $from keeps HA data in embedded Dqlite, $to in embedded etcd: data would be lost; no supported upgrade path from Dqlite to etcd. Stay below v1.19.1, or build a new cluster on $to and move the workloads to it"
  fi
  if ((t[0] == f[0] && t[1] > f[1] + 1)); then
    k3s_ha_die "refusing to upgrade k3s from $from to $to: upgrade one minor at a time: $from -> v${f[0]}.$((f[1] + 1)) first (its latest patch release), then on towards $to (docs/upgrades/manual.md)"
  fi
  if [[ -n $minimum ]] && ((t[0] != f[0] || t[1] != f[1])); then
    minimum_key=$(k3s_ha_version_key "$minimum") \
      || k3s_ha_die "K3S_HA_UPGRADE_FROM must be a K3s release tag, got '$minimum'"
    if [[ $from_key < "$minimum_key" ]]; then
      k3s_ha_die "refusing to upgrade k3s from $from to $to: every node must run $minimum or a later release of its line first (K3s v${t[0]}.${t[1]} embeds a newer etcd that the etcd in $from cannot safely hand over to; k3s-ha versions.py UPGRADE_PREREQUISITES): set k3sVersion to $minimum, run pulumi up, then set it to $to"
    fi
  fi
  return 0
}
