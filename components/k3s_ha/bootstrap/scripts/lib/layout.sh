# shellcheck shell=bash
# lib.sh part: where K3s and its config live on this node.

# Overridable so that tests never touch /etc.
k3s_ha_config_dir() {
  printf '%s\n' "${K3S_HA_CONFIG_DIR:-/etc/rancher/k3s}"
}

# The K3s data dir: K3S_HA_DATA_DIR (the start steps' parameter, which Python takes from the
# config it sends; tests), else the config's data-dir (once k3s_ha_config_from_* loaded it:
# the scripts people run by hand), else the K3s default.
k3s_ha_data_dir() {
  local from_config=""
  if [[ -n ${K3S_HA_DATA_DIR:-} ]]; then
    printf '%s\n' "$K3S_HA_DATA_DIR"
    return
  fi
  if [[ -n ${_k3s_ha_config:-} ]]; then
    from_config=$(k3s_ha_config_value data-dir) || from_config=""
  fi
  printf '%s\n' "${from_config:-/var/lib/rancher/k3s}"
}

# Succeeds once this server has embedded etcd data: from then on K3s ignores cluster-init
# and rejoins its own cluster from that data.
k3s_ha_has_etcd_data() {
  # Not the db/etcd directory: K3s creates it and writes its `name` file on every start,
  # before joining; only member/wal means etcd has run here (k3s-io/k3s pkg/etcd/etcd.go,
  # IsInitialized and walDir). A server whose join failed has the directory and no data.
  [[ -d "$(k3s_ha_data_dir)/server/db/etcd/member/wal" ]]
}

# The path the installer puts k3s at. A fixed path rather than a PATH lookup, so that the
# version check sees the binary the systemd unit runs.
k3s_ha_k3s_bin() {
  printf '%s/k3s\n' "${K3S_HA_BIN_DIR:-/usr/local/bin}"
}

# The name k3s registers the node under when config.yaml sets no node-name: k3s
# lower-cases the host name because Kubernetes node names must be lower case.
k3s_ha_node_name() {
  if [[ -n ${K3S_HA_NODE_NAME:-} ]]; then
    printf '%s\n' "$K3S_HA_NODE_NAME"
    return
  fi
  local name
  # Minimal images may lack the hostname binary; uname -n reads the same kernel name.
  if command -v hostname >/dev/null 2>&1; then
    name=$(hostname) || k3s_ha_die "could not read the host name"
  else
    name=$(uname -n) || k3s_ha_die "could not read the host name"
  fi
  printf '%s\n' "${name,,}"
}
