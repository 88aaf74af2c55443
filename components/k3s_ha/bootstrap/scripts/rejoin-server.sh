#!/usr/bin/env bash
# After restore-snapshot.sh on one server, makes another server rejoin the restored
# cluster (docs/restore.md). Run by a person on each other server, one at a time, e.g.:
#   cat lib.sh rejoin-server.sh | ssh HOST sudo env K3S_HA_PEERS=RESTORED bash -s
#
# Steps: with K3S_HA_PEERS given, config.yaml is first rewritten to join the first of
# them that answers /ping and presents the cluster's CA (its cluster-init or server: line gives way to `server:
# https://PEER:6443`): point it at the restored server when the registration address in
# config.yaml is a dead server, or when the config says cluster-init (the first server's),
# which with its db moved aside would start a new, empty cluster. Then: wait until the
# server in config.yaml's `server:` answers /ping, stop k3s, move DATA_DIR/server/db aside
# to db.before-restore-<epoch> (never deleted: remove it once the cluster is healthy),
# start k3s, and wait until this server answers /readyz with ok, is Ready after the
# restart and a NEW etcd voter (its old EtcdIsVoter=True from before the restore does not
# count).
#
# Its config.yaml must hold the same token as the restored server's.
#
# stdin is not read (with `bash -s` it is the script itself); stdout stays empty.
# Parameters (environment): K3S_HA_PEERS (space-separated addresses of the restored server
# or the fixed registration address; needed when config.yaml says cluster-init),
# K3S_HA_CA_HASH (the cluster CA's SHA-256, which a peer in K3S_HA_PEERS must present and
# the rewritten token then carries: K10<hash>::server:; default: the hash in this server's own
# server/token, which a server that was a member has; a new machine needs it given),
# K3S_READY_TIMEOUT (seconds for the whole rejoin, default 600), K3S_HA_NODE_NAME (when
# config.yaml sets node-name), K3S_HA_POLL_SECONDS (default 5), K3S_HA_DATA_DIR (default:
# the config's data-dir, else /var/lib/rancher/k3s), and for tests K3S_HA_CONFIG_DIR,
# K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# All in a function, so that bash has read the whole script before anything runs: with
# `bash -s` a command reading stdin would otherwise eat the rest of the script.
main() {
  local config join_url db aside node peers=()
  exec 1>&2
  _k3s_ha_started_at=$(date +%s)
  K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
  k3s_ha_require_seconds K3S_READY_TIMEOUT
  if [[ ! -x $(k3s_ha_k3s_bin) ]]; then
    k3s_ha_die "$(k3s_ha_k3s_bin) does not exist: k3s is not installed on this server"
  fi
  config=$(k3s_ha_config_dir)/config.yaml
  if [[ ! -f $config ]]; then
    k3s_ha_die "$config does not exist: this server has nothing to rejoin with"
  fi
  k3s_ha_config_from_file "$config"

  join_url=$(k3s_ha_config_server_url)
  read -r -a peers <<<"${K3S_HA_PEERS:-}"
  if [[ -z $join_url ]] && ! k3s_ha_config_is_true cluster-init; then
    k3s_ha_die "$config has neither server: nor cluster-init: true; is this a k3s server of this cluster?"
  fi
  if ((${#peers[@]} > 0)); then
    if ! k3s_ha_config_join_a_peer "${peers[@]}"; then
      k3s_ha_die "no server in K3S_HA_PEERS (${K3S_HA_PEERS}) answers /ping; nothing was changed; set K3S_HA_PEERS to the restored server's address"
    fi
    k3s_ha_config_save "$config"
    join_url=$(k3s_ha_config_server_url)
  elif [[ -z $join_url ]]; then
    k3s_ha_die "$config says cluster-init and K3S_HA_PEERS is not set: with its db moved aside this server would start a new, empty cluster; set K3S_HA_PEERS to the restored server's address"
  fi
  # Nothing is touched until the restored cluster answers.
  k3s_ha_wait_for_ping "$join_url" "$K3S_READY_TIMEOUT"

  k3s_ha_log "stopping k3s"
  k3s_ha_systemctl_bounded stop k3s "$K3S_READY_TIMEOUT"
  db=$(k3s_ha_data_dir)/server/db
  if [[ -e $db ]]; then
    aside=$db.before-restore-$(date +%s)
    if [[ -e $aside ]]; then
      k3s_ha_die "$aside already exists; wait a second and run this again"
    fi
    mv -- "$db" "$aside" || k3s_ha_die "could not move $db aside to $aside"
    k3s_ha_log "moved $db aside to $aside (remove it once the cluster is healthy)"
  else
    k3s_ha_log "$db does not exist; nothing to move aside"
  fi

  k3s_ha_log "starting k3s to rejoin through $join_url"
  _k3s_ha_restarted_at=$(date +%s)
  _k3s_ha_joining=1
  k3s_ha_systemctl_bounded start k3s "$K3S_READY_TIMEOUT"
  node=$(k3s_ha_node_name)
  k3s_ha_wait_server_ready "$node" "$K3S_READY_TIMEOUT"
  k3s_ha_log "$node has rejoined the restored cluster"
}

main "$@"
