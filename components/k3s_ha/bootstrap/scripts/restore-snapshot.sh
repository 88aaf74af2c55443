#!/usr/bin/env bash
# Restores the cluster from an etcd snapshot on ONE server (docs/restore.md). Run by a
# person, not by Pulumi, e.g.:
#   cat lib.sh restore-snapshot.sh | ssh HOST sudo env K3S_HA_SNAPSHOT=NAME bash -s
# Stop k3s on every other server first (systemctl stop k3s); afterwards run
# rejoin-server.sh on each of them, one at a time.
#
# Works on any surviving server, the first one or one that joined. Steps: stop k3s here;
# if config.yaml has a `server:` line (every joining server's does), keep a copy of it as
# config.yaml.before-restore-<epoch> (0600) and remove that line, because K3s refuses
# --cluster-reset while server: is set ("cannot perform cluster-reset while server URL is
# set", k3s-io/k3s pkg/cli/server/server.go) and this server is the whole cluster from now
# on; `k3s server --cluster-reset --cluster-reset-restore-path=FILE --config config.yaml`
# (restores the snapshot and makes this server the only etcd member; K3s exits 0 then);
# start k3s, and wait until this server answers /readyz with ok, is Ready after the
# restart and an etcd voter.
#
# The token in config.yaml must be the one the cluster had when the snapshot was taken:
# it encrypts the bootstrap data inside the snapshot.
#
# stdin is not read (with `bash -s` it is the script itself); stdout stays empty.
# Parameters (environment): K3S_HA_SNAPSHOT (required: a snapshot file's path, or the name
# of one under DATA_DIR/server/db/snapshots), K3S_HA_PEERS (optional, space-separated
# addresses of the other servers: refuse while any of them still answers /ping),
# K3S_HA_RESET_TIMEOUT (seconds for the reset, default 600), K3S_READY_TIMEOUT (seconds for
# start and readiness after it, default 600), K3S_HA_NODE_NAME (when config.yaml sets
# node-name), K3S_HA_POLL_SECONDS (default 5), K3S_HA_DATA_DIR (default: the config's
# data-dir, else /var/lib/rancher/k3s), and for tests K3S_HA_CONFIG_DIR, K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# All in a function, so that bash has read the whole script before anything runs: with
# `bash -s` a command reading stdin would otherwise eat the rest of the script.
main() {
  local k3s_bin config snapshot status=0 node backup peers=() reset_args=()
  exec 1>&2
  k3s_ha_require_param K3S_HA_SNAPSHOT
  K3S_READY_TIMEOUT=${K3S_READY_TIMEOUT:-600}
  k3s_ha_require_seconds K3S_READY_TIMEOUT
  K3S_HA_RESET_TIMEOUT=${K3S_HA_RESET_TIMEOUT:-600}
  k3s_ha_require_seconds K3S_HA_RESET_TIMEOUT
  k3s_bin=$(k3s_ha_k3s_bin)
  if [[ ! -x $k3s_bin ]]; then
    k3s_ha_die "$k3s_bin does not exist: k3s is not installed on this server"
  fi

  config=$(k3s_ha_config_dir)/config.yaml
  if [[ ! -f $config ]]; then
    k3s_ha_die "$config does not exist: restoring needs this server's config.yaml, with the token the cluster had when the snapshot was taken"
  fi
  k3s_ha_config_from_file "$config"
  if [[ -z $(k3s_ha_config_value token) ]]; then
    k3s_ha_die "$config has no token: line; restoring needs the token the cluster had when the snapshot was taken (it encrypts the bootstrap data inside the snapshot): add 'token: <that token>' to $config (mode 0600) and run again"
  fi

  if [[ $K3S_HA_SNAPSHOT == */* ]]; then
    snapshot=$K3S_HA_SNAPSHOT
  else
    snapshot=$(k3s_ha_data_dir)/server/db/snapshots/$K3S_HA_SNAPSHOT
  fi
  if [[ ! -f $snapshot ]]; then
    k3s_ha_die "snapshot '$K3S_HA_SNAPSHOT' not found: $snapshot is not a file; 'k3s etcd-snapshot ls' lists the snapshots"
  fi

  # Restoring while other servers still run leaves two clusters: theirs (with quorum) and
  # this restored one.
  read -r -a peers <<<"${K3S_HA_PEERS:-}"
  if k3s_ha_find_answering_peer "${peers[@]}"; then
    k3s_ha_die "k3s still answers at $_k3s_ha_answering: stop k3s on every other server first (systemctl stop k3s), then run this again"
  fi

  _k3s_ha_started_at=$(date +%s)
  k3s_ha_log "stopping k3s"
  k3s_ha_systemctl_bounded stop k3s "$K3S_READY_TIMEOUT"

  if [[ -n $(k3s_ha_config_server_url) ]]; then
    backup=$config.before-restore-$(date +%s)
    k3s_ha_write_config "$backup" < <(printf '%s' "$_k3s_ha_config")
    k3s_ha_config_replace_keys "" server
    k3s_ha_config_save "$config"
    k3s_ha_log "removed the server: line from $config (K3s refuses --cluster-reset while it is set; this server is the cluster now); the old file is $backup"
  fi

  reset_args=(server --cluster-reset "--cluster-reset-restore-path=$snapshot" --config "$config")
  # With etcd-s3 in the config, k3s would look for the snapshot in S3 instead.
  if k3s_ha_config_is_true etcd-s3; then
    reset_args+=(--etcd-s3=false)
  fi
  k3s_ha_log "restoring $snapshot with k3s server --cluster-reset (k3s's output follows)"
  timeout "$((K3S_HA_RESET_TIMEOUT > 0 ? K3S_HA_RESET_TIMEOUT : 1))" \
    "$k3s_bin" "${reset_args[@]}" </dev/null || status=$?
  if ((status == 124)); then
    k3s_ha_die "k3s server --cluster-reset did not finish within ${K3S_HA_RESET_TIMEOUT}s; k3s stays stopped here; raise K3S_HA_RESET_TIMEOUT and run this again"
  elif ((status != 0)); then
    k3s_ha_die "k3s server --cluster-reset failed (exit $status, output above); k3s stays stopped here"
  fi

  # The readiness budget starts after the reset.
  _k3s_ha_started_at=$(date +%s)
  _k3s_ha_restarted_at=$_k3s_ha_started_at
  k3s_ha_log "starting k3s on the restored data"
  k3s_ha_systemctl_bounded start k3s "$K3S_READY_TIMEOUT"
  node=$(k3s_ha_node_name)
  k3s_ha_wait_server_ready "$node" "$K3S_READY_TIMEOUT"
  k3s_ha_log "restored $snapshot on $node; now run rejoin-server.sh on each other server, one at a time"
}

main "$@"
