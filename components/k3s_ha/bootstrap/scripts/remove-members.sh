#!/usr/bin/env bash
# Takes the nodes that have left the configuration out of the cluster, from a server that
# stays. Pulumi runs it on the current first server after every node has started: in the
# create/update phase of `pulumi up`, never in its delete phase, where steps run with the OLD
# state's connection and may land on a server that is itself leaving or already gone
# (issue 10.4; pulumi step_generator.go pending deletes, real-behaviour.md).
#
# Leaving nodes: those record-members.sh named (its stdout is this step's stdin), with the
# role, address and pinned host key the member record kept for them while they were wanted
# (lib.sh, "the member record"): nothing a kubelet can write decides which machine is reached
# or which key it must answer with (issue 18.1). When nothing has left, that list stays the
# same and this step does not run at all.
#
# Each leaving node, one at a time, agents first, then servers (dead ones before live ones):
#  1. cordon it, and over SSH disable its unit and forbid systemd to restart it, before its Node goes: a
#     K3s server whose etcd member is removed and that starts again comes back as a new
#     member, an agent that starts again registers again (k3s-io/k3s#5404, member_controller.go);
#  2. behind a load balancer (K3S_HA_LB_GRACE_SECONDS > 0), a server refuses new API
#     connections from outside the cluster and waits until the balancer's health check has
#     taken it out; then it is drained (bounded; a failed drain is a warning);
#  3. a server is stopped first when the other voters keep quorum without it; otherwise (the
#     last step of 3 -> 1) its member is removed while it runs, and it is stopped right after;
#  4. delete its Node (K3s removes a server's etcd member with it) and its
#     <name>.node-password.k3s secret, so a new machine may use the name again;
#  5. stop and uninstall K3s on it (k3s-uninstall.sh / k3s-agent-uninstall.sh);
#  6. mark it removed in the record (record-members.sh makes it leave again if it comes back).
# The recorded address is reached only when no other Node has it now, and the host there must
# call itself by the node's name and answer with its pinned key (lib.sh k3s_ha_reach_node):
# an address can belong to another machine by then. A node SSH cannot reach and the cluster
# sees NotReady (or no longer lists) is dead or about to be terminated: its Node and secret
# are deleted and nothing runs on it. A node SSH cannot reach while it is Ready is refused
# with an error: removing it while it may still run would bring it back.
#
# stdin: "leaving NAME ROLE ADDRESS [TYPE BASE64]" lines (record-members.sh), then the line
# "# k3s-ha: end of nodes", then the SSH private key Pulumi logs in with, which only ever
# lives in an ssh-agent started for this run. stdout stays empty (logs go to stderr).
# Parameters (environment; contracts.RemoveMembers, which also sets the step's time
# bound): K3S_HA_SSH_USER (required), K3S_DRAIN_TIMEOUT (seconds, default 120),
# K3S_HA_SSH_TIMEOUT (seconds to connect, default 10), K3S_HA_LB_GRACE_SECONDS (default 0: no
# load balancer in front of the servers), K3S_HA_REMOVALS_PER_RUN (default 20: the time bound
# covers that many removals; more leaving nodes fail the step after those, and the next `up`
# goes on), and for tests K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

reconcile_kubectl() {
  k3s_ha_kubectl "$@" --request-timeout=30s
}

# Usage: reconcile_ssh ADDRESS COMMAND [SECONDS]
reconcile_ssh() {
  k3s_ha_ssh "$1" "${3:-$((K3S_HA_SSH_TIMEOUT + 30))}" "$2"
}

voters_ready_without() {
  local leaving=$1 name etcd ready ip label members=0 others_ready=0 rows
  rows=$(k3s_ha_node_rows) || return 1
  while IFS='|' read -r name etcd ready ip label; do
    [[ $etcd == true ]] || continue
    members=$((members + 1))
    if [[ $name != "$leaving" && $ready == True ]]; then
      others_ready=$((others_ready + 1))
    fi
  done <<<"$rows"
  # Quorum of the members as they are now: stopping one first is safe only if the others
  # still make it.
  ((others_ready >= members / 2 + 1))
}

# Usage: fence_from_balancer NAME ADDRESS
# Takes a leaving server out of the load balancer before anything else happens to it: new
# connections to 6443 from anywhere but the cluster's nodes are refused, so the balancer's
# health check fails and it stops sending clients there; then waits K3S_HA_LB_GRACE_SECONDS
# (its unhealthy threshold x interval, with a margin). The nodes themselves (agents' and
# servers' own connections, and pods elsewhere, which flannel masquerades to their node's
# address) still get through while it is drained and removed. The balancer's health checks
# and clients come from its own addresses (no client IP preservation: load_balancer.py).
fence_from_balancer() {
  local name=$1 address=$2 ip rules="" rows _name _etcd _ready _label
  rows=$(k3s_ha_node_rows) || return 0
  while IFS="|" read -r _name _etcd _ready ip _label; do
    if [[ $ip =~ ^[0-9]+([.][0-9]+){3}$ ]]; then
      rules+="iptables -I INPUT 1 -p tcp --dport 6443 -s $ip -j ACCEPT && "
    fi
  done <<<"$rows"
  if reconcile_ssh "$address" "sudo -n sh -c 'iptables -I INPUT 1 -p tcp --dport 6443 -m conntrack --ctstate NEW -j REJECT --reject-with tcp-reset && ${rules}iptables -I INPUT 1 -p tcp --dport 6443 -s 127.0.0.0/8 -j ACCEPT'" >&2; then
    k3s_ha_log "$name refuses new API connections from outside the cluster; waiting ${lb_grace}s for the load balancer to take it out"
    sleep "$lb_grace"
  else
    k3s_ha_warn "could not fence $name from the load balancer; clients may see errors while it leaves"
  fi
}

# Usage: name_local_volumes NAME
# Names, in a warning, the PersistentVolumes pinned to node NAME (node affinity on its host
# name, as local-path provisions them under DATA_DIR/storage): K3s's uninstaller deletes the
# whole data dir, so removing the node destroys them, and a drain that fails is only a warning
# (issue 17.6). One API call; a PV list that cannot be read is said too.
name_local_volumes() {
  local name=$1 rows pv nodes claim found=()
  if ! rows=$(k3s_ha_kubectl get pv --request-timeout=30s -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.spec.nodeAffinity.required.nodeSelectorTerms[*].matchExpressions[*].values[*]}{"|"}{.spec.claimRef.namespace}/{.spec.claimRef.name}{"\n"}{end}' 2>&1); then
    k3s_ha_warn "could not list PersistentVolumes ($(k3s_ha_brief "$rows")): volumes on $name's disk, if any, are deleted with it"
    return 0
  fi
  while IFS='|' read -r pv nodes claim; do
    [[ -n $pv && " $nodes " == *" $name "* ]] && found+=("$pv (claim $claim)")
  done <<<"$rows"
  if ((${#found[@]} > 0)); then
    k3s_ha_warn "removing $name destroys the data of ${#found[@]} PersistentVolume(s) on its disk: ${found[*]}"
  fi
}

# Usage: remove_node NAME ROLE READY ADDRESS KEY HOLDER
# HOLDER: the other Node that has ADDRESS as its InternalIP now, if any (nothing is sent there).
remove_node() {
  local name=$1 role=$2 ready=$3 address=$4 key=$5 holder=$6 unit=k3s-agent uninstaller=k3s-agent-uninstall.sh
  local reachable=0 stopped=0 out
  if [[ $role == server ]]; then
    unit=k3s uninstaller=k3s-uninstall.sh
  fi
  k3s_ha_log "removing $role $name ($address) from the cluster"
  name_local_volumes "$name"
  reconcile_kubectl cordon "$name" >&2 || k3s_ha_warn "could not cordon $name"
  if [[ -n $holder ]]; then
    _k3s_ha_unreachable="is not reached: its recorded address $address is node $holder's now"
  fi
  if [[ -z $holder ]] && k3s_ha_reach_node "$name" "$address" "sudo -n sh -c 'systemctl disable --quiet $unit 2>/dev/null; mkdir -p /run/systemd/system/$unit.service.d && printf \"[Service]\\nRestart=no\\n\" >/run/systemd/system/$unit.service.d/k3s-ha-leaving.conf && systemctl daemon-reload'" "$key"; then
    reachable=1
    k3s_ha_log "$name: $unit disabled and no longer restarted by systemd"
  elif [[ $ready == True ]]; then
    k3s_ha_die "$name is Ready but SSH from this server to $K3S_HA_SSH_USER@$address fails ($name $_k3s_ha_unreachable): it cannot be stopped before it is removed, and removing it while it may restart would bring it back (k3s-io/k3s#5404); let this server reach it on port 22 with its pinned host key, or stop k3s on it yourself, then run pulumi up again"
  else
    k3s_ha_log "$name is NotReady and $_k3s_ha_unreachable: taking it as gone"
  fi
  if [[ $role == server ]] && ((reachable && lb_grace > 0)); then
    fence_from_balancer "$name" "$address"
  fi
  if [[ $ready == True ]]; then
    if ! timeout --foreground "$((drain_timeout + 30))" "$(k3s_ha_k3s_bin)" kubectl drain "$name" --ignore-daemonsets \
      --delete-emptydir-data --force "--timeout=${drain_timeout}s" </dev/null >&2; then
      k3s_ha_warn "draining $name failed or timed out; removing it anyway"
    fi
  fi

  if ((reachable)) && { [[ $role == agent ]] || voters_ready_without "$name"; }; then
    reconcile_ssh "$address" "sudo -n systemctl stop $unit" >&2 || k3s_ha_warn "could not stop $unit on $name"
    stopped=1
  fi
  if out=$(reconcile_kubectl delete node "$name" --wait=true --timeout=120s 2>&1); then
    k3s_ha_log "deleted node $name (K3s removes its etcd member if it was a server)"
  elif [[ $out == *"(NotFound)"* ]]; then
    k3s_ha_log "node $name was already gone"
  else
    k3s_ha_die "could not delete node $name: $(k3s_ha_brief "$out")"
  fi
  reconcile_kubectl -n kube-system delete secret "$name.node-password.k3s" --ignore-not-found >&2 \
    || k3s_ha_warn "could not delete secret $name.node-password.k3s; a new machine named $name would be refused (Node password rejected)"
  if ((reachable)); then
    if ((!stopped)); then
      reconcile_ssh "$address" "sudo -n systemctl stop $unit" >&2 || k3s_ha_warn "could not stop $unit on $name"
    fi
    reconcile_ssh "$address" "sudo -n timeout 300 /usr/local/bin/$uninstaller </dev/null" "$((K3S_HA_SSH_TIMEOUT + 330))" >&2 \
      || k3s_ha_warn "uninstalling k3s on $name failed; it is out of the cluster, but k3s may be partly installed there"
  fi
}

# Reads the leaving nodes from stdin, up to the end line, into leaving_line[NAME]="ROLE
# ADDRESS [TYPE BASE64]", in order into names. Dies on anything else.
read_leaving() {
  local line word name role address type blob extra end="# k3s-ha: end of nodes"
  while IFS= read -r line; do
    if [[ $line == "$end" ]]; then
      return 0
    elif [[ $line == "# "* ]]; then
      continue # a note of record-members.sh's (a node that came back)
    fi
    read -r word name role address type blob extra <<<"$line"
    if [[ $word != leaving ]] || ! k3s_ha_record_line_ok "leaving $name $role $address${type:+ $type ${blob:-}}${extra:+ $extra}"; then
      k3s_ha_die "stdin line '$(k3s_ha_brief "$line")' is not 'leaving NAME ROLE ADDRESS [TYPE BASE64]'"
    fi
    leaving_line[$name]="$role $address${type:+ $type $blob}"
    names+=("$name")
  done
  k3s_ha_die "stdin ended before the line '$end' (cut short?): nothing was changed"
}

main() {
  local name ready ip role address key rows holder other removals=0 names=()
  local -A leaving_line=() ready_of=() holder_of=() _k3s_ha_record=()
  local agents=() down=() up=()
  exec 1>&2
  k3s_ha_require_param K3S_HA_SSH_USER
  k3s_ha_require_ssh_params
  drain_timeout=${K3S_DRAIN_TIMEOUT:-120}
  lb_grace=${K3S_HA_LB_GRACE_SECONDS:-0}
  k3s_ha_require_seconds lb_grace
  k3s_ha_require_seconds drain_timeout
  max_removals=${K3S_HA_REMOVALS_PER_RUN:-20}
  k3s_ha_require_seconds max_removals
  read_leaving
  if ((${#names[@]} == 0)); then
    k3s_ha_log "no node has left the configuration"
    return 0
  fi
  k3s_ha_load_ssh_key
  k3s_ha_load_record || k3s_ha_die "cannot read the member record on this server ($_k3s_ha_record_error): nothing was changed; run pulumi up again"
  rows=$(k3s_ha_node_rows) || k3s_ha_die "the API on this server does not list the nodes"
  while IFS='|' read -r name _ ready ip _; do
    [[ -n $name ]] || continue
    ready_of[$name]=$ready
    [[ -z $ip ]] || holder_of[$ip]+="$name "
  done <<<"$rows"

  for name in "${names[@]}"; do
    read -r role _ <<<"${leaving_line[$name]}"
    if [[ $role == agent ]]; then
      agents+=("$name")
    elif [[ ${ready_of[$name]:-} == True ]]; then
      up+=("$name")
    else
      # Dead (not Ready, or gone) leaving servers before live ones: etcd refuses to remove a
      # started member when the active members left would be below quorum, and allows
      # removing one that is down (mayRemoveMember, etcd server/etcdserver/server.go; 17.3).
      down+=("$name")
    fi
  done
  for name in "${agents[@]}" "${down[@]}" "${up[@]}"; do
    [[ -n $name ]] || continue
    if ((removals >= max_removals)); then
      k3s_ha_die "removed $removals nodes, as many as this step's time bound covers; $((${#names[@]} - removals)) more have left the configuration: run pulumi up again to go on"
    fi
    read -r role address key <<<"${leaving_line[$name]}"
    holder=""
    for other in ${holder_of[$address]:-}; do
      if [[ $other != "$name" ]]; then
        holder=$other
        break
      fi
    done
    remove_node "$name" "$role" "${ready_of[$name]:-}" "$address" "$key" "$holder"
    if [[ -n ${_k3s_ha_record[$name]:-} ]]; then
      _k3s_ha_record[$name]="removed ${leaving_line[$name]}"
      k3s_ha_save_record
    fi
    removals=$((removals + 1))
  done
}

main "$@"
