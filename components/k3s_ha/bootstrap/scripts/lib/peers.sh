# shellcheck shell=bash
# lib.sh part: other servers: their supervisor answers and joining one.

# --- other servers -------------------------------------------------------------------

# Usage: k3s_ha_peer_url ADDRESS
# Prints https://ADDRESS:6443 (IPv6 in brackets); fails unless ADDRESS is a host name or
# an IP address, so that nothing else ends up in a URL or in config.yaml.
k3s_ha_peer_url() {
  local address=$1
  if [[ $address =~ ^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$ ]]; then
    printf 'https://%s:6443\n' "$address"
  elif [[ $address =~ ^\[?([0-9A-Fa-f]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)\]?$ ]]; then
    printf 'https://[%s]:6443\n' "${BASH_REMATCH[1]}"
  else
    return 1
  fi
}

# Usage: k3s_ha_ping URL   (https://HOST:PORT)
# Succeeds when URL/ping answers "pong", the unauthenticated probe of the k3s supervisor.
# -k because this only asks whether a k3s server is there; nothing it says is trusted.
# Leaves what it saw in _k3s_ha_ping_result for messages.
k3s_ha_ping() {
  local body status=0
  body=$(curl -ksf --max-time 5 "${1%/}/ping" 2>/dev/null) || status=$?
  if ((status != 0)); then
    _k3s_ha_ping_result="no answer (curl exit $status)"
    return 1
  fi
  if [[ $body != pong ]]; then
    _k3s_ha_ping_result="answered '$(k3s_ha_brief "$body")' instead of pong"
    return 1
  fi
  _k3s_ha_ping_result=pong
}

# Wait check: _k3s_ha_wait_url answers /ping.
k3s_ha_ping_answers() {
  if k3s_ha_ping "$_k3s_ha_wait_url"; then
    return 0
  fi
  _k3s_ha_wait_status=$_k3s_ha_ping_result
  return 1
}

# Usage: k3s_ha_wait_for_ping URL TIMEOUT_SECONDS
k3s_ha_wait_for_ping() {
  _k3s_ha_wait_url=$1
  k3s_ha_wait_until "$1 to answer /ping" "$2" k3s_ha_ping_answers \
    "the server there must be running, and a load balancer in front must have marked it healthy"
}

# Usage: k3s_ha_peer_answers ADDRESS
# Succeeds when a K3s supervisor answers /ping at ADDRESS, with its URL in _k3s_ha_probed_url;
# otherwise logs what it saw and fails. Dies when ADDRESS is not a host name or IP address.
k3s_ha_peer_answers() {
  _k3s_ha_probed_url=$(k3s_ha_peer_url "$1") \
    || k3s_ha_die "peer address '$1' is not a host name or IP address"
  if k3s_ha_ping "$_k3s_ha_probed_url"; then
    return 0
  fi
  k3s_ha_log "peer $1: $_k3s_ha_ping_result"
  return 1
}

# Usage: k3s_ha_peer_ca_hash URL
# Prints the SHA-256 of what URL/cacerts serves (the cluster CA a K3s server presents; -k
# because this is what is being checked). Fails when nothing answers.
k3s_ha_peer_ca_hash() {
  local digest
  # The bytes as served go straight to sha256sum ($(...) would drop trailing newlines).
  digest=$(set -o pipefail && curl -ksf --max-time 5 "${1%/}/cacerts" 2>/dev/null | sha256sum) || return 1
  printf '%s\n' "${digest%% *}"
}

# Usage: k3s_ha_config_join_a_peer [ADDRESS...]
# Probes each address; on the first that answers /ping AND presents this cluster's CA (its
# /cacerts hashes to K3S_HA_CA_HASH, or without it to the hash in this server's own
# server/token), rewrites _k3s_ha_config to join it with the secure token form
# (K10<hash>::server:..., which K3s checks again itself), sets _k3s_ha_peer_url to its URL and
# succeeds. Fails when none does. A server with cluster-init on a fresh disk would otherwise
# start a second, separate cluster next to the running one (k3s-ansible#269); a peer with
# another CA is someone else, who must not receive the token (issue 18.2).
k3s_ha_config_join_a_peer() {
  local address url wanted got
  wanted=${K3S_HA_CA_HASH:-}
  if [[ -z $wanted ]]; then
    wanted=$(k3s_ha_cluster_ca_hash) \
      || k3s_ha_die "cannot check which cluster a peer belongs to: K3S_HA_CA_HASH is not set and $(k3s_ha_data_dir)/server/token holds no K10<hash> (set K3S_HA_CA_HASH to the prefix of server/token on a running server, between K10 and ::)"
  fi
  if [[ ! $wanted =~ ^[0-9a-f]{64}$ ]]; then
    k3s_ha_die "K3S_HA_CA_HASH is '$wanted', expected 64 lower-case hex digits (the cluster CA's SHA-256)"
  fi
  for address in "$@"; do
    k3s_ha_peer_answers "$address" || continue
    url=$_k3s_ha_probed_url
    if ! got=$(k3s_ha_peer_ca_hash "$url"); then
      k3s_ha_log "peer $address answers /ping but serves no /cacerts: not joining it"
      continue
    fi
    if [[ $got != "$wanted" ]]; then
      k3s_ha_log "peer $address presents another cluster CA (sha256 $got, this cluster's is $wanted): not sending it the token"
      continue
    fi
    k3s_ha_log "this cluster already answers at $address (its CA checked): joining it instead of starting a second cluster (k3s-ansible#269)"
    k3s_ha_config_join "$url"
    k3s_ha_config_secure_token "$wanted"
    _k3s_ha_peer_url=$url
    return 0
  done
  return 1
}

# Usage: k3s_ha_find_answering_peer [ADDRESS...]
# For the step that may start the cluster (K3S_HA_INIT), which knows no cluster CA yet and so
# cannot tell this cluster from another, and for a restore, which must be alone: succeeds, with the address in _k3s_ha_answering,
# when a K3s server answers /ping at one of ADDRESSes; fails when none does.
k3s_ha_find_answering_peer() {
  local address
  for address in "$@"; do
    if k3s_ha_peer_answers "$address"; then
      _k3s_ha_answering=$address
      return 0
    fi
  done
  return 1
}
