# shellcheck shell=bash
# lib.sh part: the member record (record-members.sh, remove-members.sh, evict-node.sh).

#
# Which nodes this configuration has, with the role, private address and pinned SSH host key
# Pulumi gave each, is kept in one ConfigMap, kube-system/k3s-ha-members, which only cluster
# admins may write: a kubelet may write its own Node (labels, annotations and addresses
# included) but no ConfigMap (Kubernetes Node authorizer and NodeRestriction; issue 18.1).
# So no node can make the servers treat another machine as a member, reach an address of its
# choosing or trust a host key of its choosing. One line per node, sorted by name:
#   STATE NAME ROLE ADDRESS [TYPE BASE64] [@TIME]
# STATE is member (in the configuration), leaving (left it; remove-members.sh takes it out)
# or removed (taken out; one that comes back is leaving again, issue 17.5), ROLE server|agent;
# the key "none" says that nothing may be sent to the node (its recorded key was no key).
# @TIME, on an agent member only, is the install stamp of its machine whose old Nodes
# record-members.sh has already evicted (a fresh machine is handled once).

_k3s_ha_record_name=k3s-ha-members

# Usage: k3s_ha_split_stamp TEXT
# Sets _k3s_ha_stamp to the TIME of a last word "@TIME" (a fresh agent machine's install
# stamp: record-members.sh), "" when there is none, and _k3s_ha_unstamped to TEXT without it.
k3s_ha_split_stamp() {
  _k3s_ha_unstamped=$1
  _k3s_ha_stamp=""
  if [[ $1 =~ (^|\ )@([0-9]+)$ ]]; then
    _k3s_ha_stamp=${BASH_REMATCH[2]}
    _k3s_ha_unstamped=${1%@*}
    _k3s_ha_unstamped=${_k3s_ha_unstamped% }
  fi
}

# Usage: k3s_ha_record_line_ok LINE
k3s_ha_record_line_ok() {
  local line state name role address type blob extra
  k3s_ha_split_stamp "$1"
  line=$_k3s_ha_unstamped
  if [[ -n $_k3s_ha_stamp && ! $line =~ ^member\ [^\ ]+\ agent\ [^\ ]+ ]]; then
    return 1 # only an agent member carries a stamp
  fi
  read -r state name role address type blob extra <<<"$line"
  [[ $state =~ ^(member|leaving|removed)$ && $role =~ ^(server|agent)$ && -z $extra ]] || return 1
  k3s_ha_is_node_name "${name:-}" && [[ ${address:-} =~ ^[0-9A-Fa-f.:]+$ ]] || return 1
  [[ -z $type || ($type == none && -z $blob) ]] || k3s_ha_is_host_key "$type $blob"
}

# Usage: k3s_ha_load_record   (the caller declares: local -A _k3s_ha_record=())
# Reads the record into _k3s_ha_record[NAME]="STATE ROLE ADDRESS [TYPE BASE64] [@TIME]" and keeps the
# text read in _k3s_ha_record_text. With no record yet (a cluster an older k3s-ha release set
# up) it is derived, in memory, from the Nodes labelled k3s-ha.io/cluster=K3S_HA_CLUSTER and
# their addresses, as that release decided membership (_k3s_ha_record_legacy=1; their keys:
# k3s_ha_legacy_key): the first record-members.sh run writes it, and labels are not read again. Returns 1, with
# _k3s_ha_record_error, when the API cannot say, or the record does not parse.
# shellcheck disable=SC2004 # _k3s_ha_record is the caller's associative array
k3s_ha_load_record() {
  local out line name etcd _ready ip label role
  _k3s_ha_record=()
  _k3s_ha_record_text=""
  _k3s_ha_record_legacy=0
  if out=$(k3s_ha_kubectl -n kube-system get configmap "$_k3s_ha_record_name" -o 'jsonpath={.data.nodes}' --request-timeout=30s 2>&1); then
    while IFS= read -r line; do
      [[ -n $line ]] || continue
      if ! k3s_ha_record_line_ok "$line"; then
        _k3s_ha_record_error="kube-system/$_k3s_ha_record_name has a line that is not 'STATE NAME ROLE ADDRESS [TYPE BASE64] [@TIME]': '$(k3s_ha_brief "$line")'"
        return 1
      fi
      read -r _ name _ <<<"$line"
      _k3s_ha_record[$name]=${line/ $name / }
    done <<<"$out"
    _k3s_ha_record_text=$(k3s_ha_record_text)
    return 0
  fi
  if [[ $out != *"(NotFound)"* ]]; then
    _k3s_ha_record_error=$(k3s_ha_brief "$out")
    return 1
  fi
  # Not the annotations in this list: one may hold any text, newlines too, which could forge
  # rows. k3s_ha_legacy_key reads a node's own when it is needed.
  if ! out=$(k3s_ha_node_rows 2>&1); then
    _k3s_ha_record_error=$(k3s_ha_brief "$out")
    return 1
  fi
  _k3s_ha_record_legacy=1
  while IFS='|' read -r name etcd _ready ip label; do
    [[ -n $name && -n ${K3S_HA_CLUSTER:-} && $label == "$K3S_HA_CLUSTER" ]] || continue
    role=agent
    [[ $etcd != true ]] || role=server
    if k3s_ha_record_line_ok "member $name $role ${ip:--}"; then
      _k3s_ha_record[$name]="member $role $ip"
    else
      k3s_ha_warn "node $name is labelled k3s-ha.io/cluster=$K3S_HA_CLUSTER but has no usable address ('$ip'): not taken into the record"
    fi
  done <<<"$out"
  if ((${#_k3s_ha_record[@]} > 0)); then
    k3s_ha_log "no kube-system/$_k3s_ha_record_name yet: took ${#_k3s_ha_record[@]} members from the k3s-ha.io/cluster=$K3S_HA_CLUSTER labels an older k3s-ha set (the last time labels are read)"
  fi
}

# Usage: k3s_ha_legacy_key NAME
# For a record derived from labels: prints node NAME's pinned host key as an older k3s-ha
# recorded it (annotation k3s-ha.io/ssh-host-key), nothing when it has none, and "none" (send
# nothing there) when it cannot be read or is not one host key: the annotation is the node's
# own kubelet's to write.
k3s_ha_legacy_key() {
  local key
  [[ ${_k3s_ha_record_legacy:-0} == 1 ]] || return 0
  if ! key=$(k3s_ha_kubectl get node "$1" -o 'jsonpath={.metadata.annotations.k3s-ha\.io/ssh-host-key}' --request-timeout=30s 2>/dev/null); then
    k3s_ha_warn "could not read $1's k3s-ha.io/ssh-host-key annotation: nothing is sent to it"
    printf 'none\n'
  elif [[ -z $key ]] || k3s_ha_is_host_key "$key"; then
    printf '%s\n' "$key"
  else
    k3s_ha_warn "$1's k3s-ha.io/ssh-host-key annotation is not an SSH host key: nothing is sent to it"
    printf 'none\n'
  fi
}

# Prints the record as stored: "STATE NAME ROLE ADDRESS [TYPE BASE64] [@TIME]" lines, sorted by name.
k3s_ha_record_text() {
  local name state rest
  for name in "${!_k3s_ha_record[@]}"; do
    read -r state rest <<<"${_k3s_ha_record[$name]}"
    printf '%s %s %s\n' "$state" "$name" "$rest"
  done | LC_ALL=C sort -k2,2
}

# Usage: k3s_ha_save_record
# Writes the record when it differs from what was read (no API write otherwise): one
# `kubectl apply` of the whole ConfigMap, from a file (it grows with the cluster).
k3s_ha_save_record() {
  local text file out
  text=$(k3s_ha_record_text)
  if [[ $text == "$_k3s_ha_record_text" ]]; then
    return 0
  fi
  file=$(mktemp "${TMPDIR:-/tmp}/k3s-ha-record.XXXXXX") || k3s_ha_die "could not create a temporary file"
  k3s_ha_at_exit rm -f -- "$file"
  # Every character of the lines is [-a-z0-9.:+/=@ A-Z]: JSON needs only the newlines escaped.
  printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s","namespace":"kube-system"},"data":{"nodes":"%s"}}\n' \
    "$_k3s_ha_record_name" "${text//$'\n'/\\n}\\n" >"$file"
  if ! out=$(k3s_ha_kubectl apply -f "$file" --request-timeout=30s 2>&1); then
    k3s_ha_die "could not write kube-system/$_k3s_ha_record_name: $(k3s_ha_brief "$out")"
  fi
  _k3s_ha_record_text=$text
  k3s_ha_log "recorded the cluster's members in kube-system/$_k3s_ha_record_name"
}
