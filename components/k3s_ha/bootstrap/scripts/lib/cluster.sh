# shellcheck shell=bash
# lib.sh part: the cluster's API as seen from this node: Nodes, readiness, removal.

# Succeeds when NAME can be a Kubernetes node name (also keeps it from reading as a flag).
k3s_ha_is_node_name() {
  [[ $1 =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]]
}

# Usage: k3s_ha_kubectl ARGS...
# `k3s kubectl` with the credentials this node has: the admin kubeconfig on a server (the
# default of k3s kubectl), or the file K3S_HA_KUBECONFIG names. An agent has no admin
# kubeconfig; start-agent.sh points K3S_HA_KUBECONFIG at the kubelet's own,
# DATA_DIR/agent/kubelet.kubeconfig (k3s-io/k3s pkg/agent/config/config.go), with which a
# node may read Node objects (Kubernetes Node authorizer).
k3s_ha_kubectl() {
  local k3s_bin
  k3s_bin=$(k3s_ha_k3s_bin)
  if [[ -n ${K3S_HA_KUBECONFIG:-} ]]; then
    "$k3s_bin" kubectl --kubeconfig "$K3S_HA_KUBECONFIG" "$@" </dev/null
  else
    "$k3s_bin" kubectl "$@" </dev/null
  fi
}

# --- other nodes of the cluster (evict-node.sh, record-members.sh, remove-members.sh) ----

# The kubectl output format k3s_ha_node_rows prints: "name|etcd role|Ready|InternalIP|cluster
# label", one node a line. Never an annotation: one may hold any text, newlines too, which
# could forge rows.
k3s_ha_node_rows_format() {
  printf '%s\n' 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.metadata.labels.node-role\.kubernetes\.io/etcd}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.addresses[?(@.type=="InternalIP")].address}{"|"}{.metadata.labels.k3s-ha\.io/cluster}{"\n"}{end}'
}

# Prints "name|etcd|ready|ip|label" for every Node (one API call of at most 30 s): etcd is
# "true" for a server (K3s's node-role.kubernetes.io/etcd label), ready the Ready
# condition's status (True, False, or Unknown once the kubelet stopped reporting), label the
# k3s-ha.io/cluster label an older release put on its nodes (lib.sh k3s_ha_load_record).
k3s_ha_node_rows() {
  k3s_ha_kubectl get nodes -o "$(k3s_ha_node_rows_format)" --request-timeout=30s
}

# Usage: k3s_ha_forget_node NAME SECONDS
# Deletes Node NAME, waiting up to SECONDS for it to go (a server's etcd finalizer removes its
# member first), and its NAME.node-password.k3s secret, so a new machine may take the name.
# Warns instead of failing: the evict steps never fail the `up` (the join then reports a clash).
k3s_ha_forget_node() {
  k3s_ha_kubectl delete node "$1" --wait=true "--timeout=${2}s" --request-timeout=30s \
    || k3s_ha_warn "could not delete node $1"
  k3s_ha_kubectl -n kube-system delete secret "$1.node-password.k3s" --ignore-not-found --request-timeout=30s \
    || k3s_ha_warn "could not delete secret $1.node-password.k3s"
}

# Usage: k3s_ha_read_running_version NODE
# Sets _k3s_ha_running to the k3s version NODE runs (its Node's
# status.nodeInfo.kubeletVersion), or to nothing when the API does not say; what it said
# then is in _k3s_ha_version_error.
k3s_ha_read_running_version() {
  local out
  _k3s_ha_running="" _k3s_ha_version_error=""
  if out=$(k3s_ha_kubectl get node "$1" --request-timeout=10s \
    -o 'jsonpath={.status.nodeInfo.kubeletVersion}' 2>&1) && k3s_ha_version_key "$out" >/dev/null; then
    _k3s_ha_running=$out
  else
    _k3s_ha_version_error=$(k3s_ha_brief "${out:-<empty>}")
  fi
}

# Usage: k3s_ha_read_condition NODE TYPE
# Reads condition TYPE of NODE into _k3s_ha_condition (True, False, Unknown, or
# "error: <what kubectl said>"), _k3s_ha_heartbeat and _k3s_ha_transition (its
# lastHeartbeatTime and lastTransitionTime in epoch seconds, 0 when unknown).
k3s_ha_read_condition() {
  local node=$1 type=$2 out selector status heartbeat transition
  selector="{.status.conditions[?(@.type==\"$type\")]"
  _k3s_ha_condition="" _k3s_ha_heartbeat=0 _k3s_ha_transition=0
  if ! out=$(k3s_ha_kubectl get node "$node" --request-timeout=10s \
    -o "jsonpath=$selector.status} $selector.lastHeartbeatTime} $selector.lastTransitionTime}" 2>&1); then
    _k3s_ha_condition=$(k3s_ha_brief "error: $out")
    return 0
  fi
  read -r status heartbeat transition _ <<<"$out" || true
  _k3s_ha_condition=$(k3s_ha_brief "$status")
  _k3s_ha_heartbeat=$(date -u -d "$heartbeat" +%s 2>/dev/null) || _k3s_ha_heartbeat=0
  _k3s_ha_transition=$(date -u -d "$transition" +%s 2>/dev/null) || _k3s_ha_transition=0
}

# Wait check: node _k3s_ha_wait_node is Ready.
k3s_ha_node_ready() {
  k3s_ha_read_condition "$_k3s_ha_wait_node" Ready
  if [[ $_k3s_ha_condition == True ]]; then
    return 0
  fi
  _k3s_ha_wait_status="Ready (last seen: $_k3s_ha_condition)"
  return 1
}

# Adds to _k3s_ha_unmet what keeps the node _k3s_ha_wait_node from counting as up after its
# own restart (_k3s_ha_restarted_at, when this run restarted it):
# - Ready must be True in a status the kubelet posted after the restart (lastHeartbeatTime
#   not before it): right after a restart the Node still shows the old kubelet's Ready=True
#   until the new one posts its first status, which it does as soon as it runs, stamping
#   Ready's lastHeartbeatTime with its own clock, the one `date` reads here
#   (kubernetes pkg/kubelet/nodestatus/setters.go, ReadyCondition);
# - with K3S_VERSION, the Node's kubeletVersion must be it: the node RUNS the new version.
k3s_ha_check_node_after_restart() {
  local node=$_k3s_ha_wait_node since=${_k3s_ha_restarted_at:-}
  k3s_ha_read_condition "$node" Ready
  if [[ $_k3s_ha_condition != True ]]; then
    _k3s_ha_unmet+=("Ready (last seen: $_k3s_ha_condition)")
  elif [[ -n $since ]] && ((_k3s_ha_heartbeat < since)); then
    _k3s_ha_unmet+=("Ready (last seen: True, but from $(k3s_ha_time "$_k3s_ha_heartbeat"), before the restart at $(k3s_ha_time "$since"))")
  fi
  if [[ ${K3S_HA_WAIT_CLOUD_INIT:-0} == 1 ]]; then
    k3s_ha_check_cloud_initialized "$node"
  fi
  if [[ -n ${K3S_VERSION:-} ]]; then
    k3s_ha_read_running_version "$node"
    if [[ $_k3s_ha_running != "$K3S_VERSION" ]]; then
      _k3s_ha_unmet+=("running version $K3S_VERSION (last seen: ${_k3s_ha_running:-$_k3s_ha_version_error})")
    fi
  fi
}

# The taint (below) a kubelet started with --cloud-provider=external registers its Node with, and
# that the cloud controller manager's node controller removes once it has set the Node's
# providerID and zone labels (kubernetes pkg/kubelet/kubelet_node_status.go,
# initialNode: TaintExternalCloudProvider; k8s.io/cloud-provider
# controllers/node/node_controller.go). Until then nothing else is scheduled there.
# Usage: k3s_ha_check_cloud_initialized NODE
# With K3S_HA_WAIT_CLOUD_INIT=1 (the node's kubelet runs with cloud-provider=external):
# adds to _k3s_ha_unmet while NODE still carries the uninitialized taint or has no
# providerID, i.e. the cloud controller manager has not initialised it yet.
k3s_ha_check_cloud_initialized() {
  local out taints provider taint=node.cloudprovider.kubernetes.io/uninitialized
  if ! out=$(k3s_ha_kubectl get node "$1" --request-timeout=10s \
    -o 'jsonpath={.spec.providerID}{"|"}{range .spec.taints[*]}{.key}{" "}{end}' 2>&1); then
    _k3s_ha_unmet+=("initialised by the cloud controller manager (last seen: $(k3s_ha_brief "error: $out"))")
    return 0
  fi
  provider=${out%%|*}
  taints=" ${out#*|}"
  if [[ $taints == *" $taint "* || -z $provider ]]; then
    _k3s_ha_unmet+=("initialised by the cloud controller manager (last seen: providerID '${provider}', taint $taint $([[ $taints == *" $taint "* ]] && echo set || echo gone))")
  fi
}

# Sets _k3s_ha_wait_status from _k3s_ha_unmet; succeeds when nothing is unmet.
k3s_ha_report_unmet() {
  local item joined=""
  if ((${#_k3s_ha_unmet[@]} == 0)); then
    return 0
  fi
  for item in "${_k3s_ha_unmet[@]}"; do
    joined+="${joined:+; }$item"
  done
  _k3s_ha_wait_status="not yet satisfied: $joined"
  return 1
}

# Wait check: server _k3s_ha_wait_node is a full member. Ready alone is not enough: a
# joining server is Ready while etcd still holds it as a learner, and the next server's
# join fails if it starts before this one is promoted. /ping is not enough either: the
# supervisor answers it before etcd and the apiserver are up; /readyz answers ok only
# once the apiserver (and its etcd) is.
# EtcdIsVoter is set by the etcd leader, which refreshes an unchanged condition only every
# 5 minutes (k3s-io/k3s pkg/etcd/etcd.go, setEtcdStatusCondition, heartbeatInterval). A
# restart of a member with its data keeps its membership, so its True stands; but a server
# that starts without etcd data (_k3s_ha_joining: a join, a rejoin after a restore, a
# rebuilt machine whose Node still shows the old True) must show a transition to True
# after its start.
k3s_ha_server_ready() {
  local readyz since=${_k3s_ha_restarted_at:-}
  _k3s_ha_unmet=()
  if readyz=$(k3s_ha_kubectl get --raw=/readyz --request-timeout=10s 2>&1); then
    readyz=$(k3s_ha_brief "$readyz")
  else
    readyz=$(k3s_ha_brief "error: $readyz")
  fi
  [[ $readyz == ok ]] || _k3s_ha_unmet+=("readyz (last seen: $readyz)")
  k3s_ha_check_node_after_restart
  k3s_ha_read_condition "$_k3s_ha_wait_node" EtcdIsVoter
  if [[ $_k3s_ha_condition != True ]]; then
    _k3s_ha_unmet+=("EtcdIsVoter (last seen: $_k3s_ha_condition)")
  elif [[ -n $since && -n ${_k3s_ha_joining:-} ]] && ((_k3s_ha_transition < since)); then
    _k3s_ha_unmet+=("EtcdIsVoter (last seen: True, but since $(k3s_ha_time "$_k3s_ha_transition"), before this server started without etcd data at $(k3s_ha_time "$since"))")
  fi
  k3s_ha_report_unmet
}

# Usage: k3s_ha_wait_server_ready NODE TIMEOUT_SECONDS
# Waits until the local server NODE answers /readyz with ok, is Ready and an etcd voter
# (after its restart, and running K3S_VERSION when that is set: k3s_ha_server_ready).
k3s_ha_wait_server_ready() {
  _k3s_ha_wait_node=$1
  k3s_ha_wait_until "k3s server $1 to be ready (readyz ok, Ready=True, EtcdIsVoter=True${K3S_VERSION:+, running $K3S_VERSION})" \
    "$2" k3s_ha_server_ready "see journalctl -u k3s"
}
