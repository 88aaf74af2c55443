#!/usr/bin/env bash
# Starts (or keeps running) a K3s server and waits until it is a full member of the
# cluster. The same script serves the first server and every joining server: K3S_HA_JOIN_URL
# says which (unset: the first, whose config.yaml has `cluster-init: true`; else the
# `server:` URL its config.yaml joins). Python passes what it wrote into config.yaml rather
# than have this script parse it back (issue 16).
#
# stdin: the complete config.yaml (holds the token; never echoed), optionally followed by
# registries.yaml after a separator line (lib.sh k3s_ha_config_split_registries), optionally
# followed by manifests for DATA_DIR/server/manifests/k3s-ha.yaml (k3s_ha_config_split_manifests); stdin ends
# with the end marker line (k3s_ha_config_end_marker); without it nothing is written or restarted.
# stdout: exactly one line, the node's name as K3s registers it (the init step: see below);
# every log goes to stderr.
# Parameters (environment; contracts.StartServer): K3S_HA_JOIN_URL (see above),
# K3S_HA_DATA_DIR (K3s's data dir, as config.yaml sets it; default /var/lib/rancher/k3s),
# K3S_HA_WITH_REGISTRIES (1: stdin must carry a registries.yaml), K3S_HA_WITH_MANIFESTS (1:
# stdin must carry manifests), K3S_HA_WAIT_CLOUD_INIT (1: the kubelet runs with
# cloud-provider=external, so the node counts as up only once the cloud controller manager
# has initialised it), K3S_READY_TIMEOUT (seconds from the script's start until
# the server must be ready, waits and restart included; default 600), K3S_VERSION
# (optional: refuse to start unless the installed binary reports exactly this, restart a
# server that runs another version, and wait until it runs this one),
# K3S_HA_PEERS (optional, space-separated addresses of the other servers or the fixed
# registration address: a server whose config says cluster-init but which has no etcd
# data yet joins the first of them that answers /ping instead of starting a second
# cluster), K3S_HA_CLUSTER_INIT (allowed, the default, or never: with never such a server
# fails when no peer answers instead of running cluster-init), K3S_HA_MACHINE (ignored: the
# machine's identity, so that a new machine at the same address re-runs this step),
# K3S_HA_NODE_NAME (needed only when config.yaml sets node-name),
# K3S_HA_POLL_SECONDS (default 5), K3S_HA_CA_HASH (the cluster CA's SHA-256: a peer joined
# through K3S_HA_PEERS must present that CA, and is joined with the secure token form),
# K3S_HA_INIT (1: the cluster's init step, see below), and for tests K3S_HA_CONFIG_DIR,
# K3S_HA_BIN_DIR.
#
# The init step (K3S_HA_INIT=1) runs once in a cluster's life, on the first server, before its
# start step. On a server that already holds cluster data it changes nothing; otherwise it
# starts the cluster (cluster-init), refusing when a K3s server already answers at one of the
# peers (it knows no CA to check it by). Either way its stdout is one line, "HASH created" or
# "HASH existing": the cluster CA's SHA-256, which every later join carries (K10<HASH>::), and
# whether this step made the cluster (new clusters get the defaults only a new cluster can
# take, such as secrets-encryption).
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

# Bounds the step; only the node name may reach stdout (fd 3): Python reads it from there.
k3s_ha_begin_start

k3s_ha_config_from_stdin
k3s_ha_config_split_manifests
k3s_ha_config_split_registries
read -r -a peers <<<"${K3S_HA_PEERS:-}"
if [[ ${K3S_HA_INIT:-} == 1 ]]; then
  if k3s_ha_has_etcd_data; then
    # A cluster made before k3s-ha had this step: learn its CA, touch nothing.
    ca_hash=$(k3s_ha_cluster_ca_hash) \
      || k3s_ha_die "this server holds cluster data but $(k3s_ha_data_dir)/server/token holds no K10<hash> (K3s writes it at every start): start K3s here once, then run pulumi up again"
    k3s_ha_log "this server already holds the cluster's data: nothing to start, its CA is $ca_hash"
    printf '%s existing\n' "$ca_hash" >&3
    exit 0
  fi
  if [[ -n ${K3S_HA_JOIN_URL:-} ]]; then
    k3s_ha_die "K3S_HA_INIT and K3S_HA_JOIN_URL exclude each other: the init step starts the cluster"
  fi
  if k3s_ha_find_answering_peer "${peers[@]}"; then
    # Written (0600), K3s not started: what rejoin-server.sh needs for a hand join.
    k3s_ha_config_save "$(k3s_ha_config_dir)/config.yaml"
    k3s_ha_die "a K3s server already answers at $_k3s_ha_answering, and this server has no cluster data: k3s-ha will neither start a second cluster (k3s-ansible#269) nor send the token to a server whose CA it has never seen. config.yaml was written and K3s not started. If $_k3s_ha_answering is this cluster, join it by hand with rejoin-server.sh, K3S_HA_PEERS=$_k3s_ha_answering and K3S_HA_CA_HASH set to its CA's hash (docs/day2.md, 'A first server that cannot start'); otherwise free that address. Then run pulumi up again"
  fi
  peers=()
fi
k3s_ha_refuse_token_change
join_url=${K3S_HA_JOIN_URL:-}
if [[ -n $join_url && ! $join_url =~ ^https://[^[:space:]/]+$ ]]; then
  k3s_ha_die "K3S_HA_JOIN_URL is '$join_url', expected https://ADDRESS:6443"
fi
if k3s_ha_has_etcd_data; then
  # K3s ignores cluster-init once etcd data exists: the config is written as given.
  :
elif [[ -z $join_url ]]; then
  if ((${#peers[@]} > 0)) && k3s_ha_config_join_a_peer "${peers[@]}"; then
    join_url=$_k3s_ha_peer_url
  elif [[ ${K3S_HA_CLUSTER_INIT:-allowed} == never ]]; then
    # Pulumi runs this mode on every run after the cluster's first: a cluster exists, and a
    # fresh disk here (a rebuilt first server) must join it, never start a second one.
    k3s_ha_die "this server has no etcd data and none of its peers (${K3S_HA_PEERS:-none given}) answers /ping: refusing to start a new cluster (cluster-init), because this cluster was initialised before; bring one of those servers (or the load balancer) back, then run pulumi up again"
  else
    k3s_ha_log "no other server answers: starting a new cluster (cluster-init)"
  fi
fi
k3s_ha_config_save "$(k3s_ha_config_dir)/config.yaml"
k3s_ha_registries_save "$(k3s_ha_config_dir)/registries.yaml"
k3s_ha_manifests_save "$(k3s_ha_data_dir)/server/manifests/k3s-ha.yaml"

# A first join needs the cluster behind `server:` to answer, and a load balancer there may
# not have marked the first server healthy yet. A member with etcd data starts without it.
if [[ -n $join_url ]] && ! k3s_ha_has_etcd_data; then
  k3s_ha_wait_for_ping "$join_url" "$K3S_READY_TIMEOUT"
fi

node=$(k3s_ha_node_name)
if ! k3s_ha_has_etcd_data; then
  # Whatever the Node shows about etcd membership predates this start.
  _k3s_ha_joining=1
fi
k3s_ha_start_service k3s "$K3S_READY_TIMEOUT" "$node"
k3s_ha_wait_server_ready "$node" "$K3S_READY_TIMEOUT"
if [[ ${K3S_HA_INIT:-} == 1 ]]; then
  ca_hash=$(k3s_ha_cluster_ca_hash) \
    || k3s_ha_die "K3s is ready but $(k3s_ha_data_dir)/server/token holds no K10<hash>; see journalctl -u k3s"
  printf '%s created\n' "$ca_hash" >&3
else
  printf '%s\n' "$node" >&3
fi
