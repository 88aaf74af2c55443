#!/usr/bin/env bash
# Takes the nodes that have left the configuration out of the cluster, from a server that
# stays. Pulumi runs it on the current first server after every node has started: in the
# create/update phase of `pulumi up`, never in its delete phase, where steps run with the OLD
# state's connection and may land on a server that is itself leaving or already gone
# (issue 10.4; pulumi step_generator.go pending deletes, real-behaviour.md).
#
# Leaving nodes: every Node labelled k3s-ha.io/cluster=K3S_HA_CLUSTER whose name is not among
# the wanted nodes (the names the start steps reported, on stdin). The wanted nodes are
# labelled first, so a node somebody joined by hand (without the label) is never touched.
# Only what differs is written: one list of the Nodes, then a patch for each wanted node whose
# label or recorded key is not yet right (none when nothing changed), in time linear in the
# number of Nodes.
#
# Host keys: a node that leaves is no longer in the configuration, so its host key is not
# among this run's inputs. Every wanted node's pinned key (on its stdin line) is therefore
# recorded on its Node (annotation k3s-ha.io/ssh-host-key, set with the label, removed when
# the node has no pinned key any more); when the node leaves, SSH to its address must answer
# with that key (lib.sh k3s_ha_reach_node). Only who may patch Nodes (cluster admins) and the
# node's own kubelet can change it. A leaving node without the annotation (one that left before any reconcile ran
# with host keys, or that never had a pinned key) is reached as before, accepting any host
# key, with a warning naming it (README, "Accepted risks": unpinned hosts).
#
# Each leaving node, one at a time, agents first, then servers:
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
#  5. stop and uninstall K3s on it (k3s-uninstall.sh / k3s-agent-uninstall.sh).
# A node SSH cannot reach and the cluster sees NotReady is dead (or about to be terminated):
# its Node and secret are deleted and nothing runs on it. A node SSH cannot reach while it
# is Ready is refused with an error: removing it while it may still run would bring it back.
# An address that answers with another host key than the node's pinned one counts as
# unreachable and is sent nothing: whoever answers there is not that node. NotReady, the
# node is taken as gone (its address now belongs to another machine); Ready, the node still
# runs somewhere that cannot be told to stop, so it is refused like an unreachable one.
#
# stdin: the wanted nodes, one line each, "node NAME" or "node NAME TYPE BASE64" (its pinned
# SSH host key, public), then the line "# k3s-ha: end of nodes", then the SSH private key
# Pulumi logs in with, which only ever lives in an ssh-agent started for this run. On stdin,
# not in the command: the list grows with the cluster (Linux caps one argument at 128 KiB).
# stdout stays empty (logs go to stderr).
# Parameters (environment; contracts.ReconcileMembers, which also sets the step's time
# bound): K3S_HA_CLUSTER (required, a label value), K3S_HA_SSH_USER (required),
# K3S_DRAIN_TIMEOUT (seconds, default 120), K3S_HA_SSH_TIMEOUT (seconds to connect, default
# 10), K3S_HA_LB_GRACE_SECONDS (default 0: no load balancer in front of the servers),
# K3S_HA_REMOVALS_PER_RUN (default 20: the time bound covers that many removals; more
# leaving nodes fail the step after those, and the next `up` goes on), and for tests
# K3S_HA_BIN_DIR.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

CLUSTER_LABEL=k3s-ha.io/cluster
# Read back per node by k3s_ha_pin_node_host_key (lib.sh), here and in evict-node.sh.
HOST_KEY_ANNOTATION=k3s-ha.io/ssh-host-key

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

# Usage: remove_node NAME ROLE READY ADDRESS
remove_node() {
  local name=$1 role=$2 ready=$3 address=$4 unit=k3s-agent uninstaller=k3s-agent-uninstall.sh
  local reachable=0 stopped=0 out
  if [[ $role == server ]]; then
    unit=k3s uninstaller=k3s-uninstall.sh
  fi
  k3s_ha_log "removing $role $name ($address) from the cluster"
  name_local_volumes "$name"
  reconcile_kubectl cordon "$name" >&2 || k3s_ha_warn "could not cordon $name"
  if k3s_ha_reach_node "$name" "$address" "sudo -n sh -c 'systemctl disable --quiet $unit 2>/dev/null; mkdir -p /run/systemd/system/$unit.service.d && printf \"[Service]\\nRestart=no\\n\" >/run/systemd/system/$unit.service.d/k3s-ha-leaving.conf && systemctl daemon-reload'"; then
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

# Usage: leaving_rows ROWS
# Prints the rows of ROWS ("name|etcd|ready|ip|label") whose node carries this cluster's
# label and is not wanted.
leaving_rows() {
  local name etcd ready ip label
  while IFS='|' read -r name etcd ready ip label; do
    [[ $label == "$K3S_HA_CLUSTER" ]] || continue
    [[ -n ${is_wanted[$name]:-} ]] && continue
    printf '%s|%s|%s|%s\n' "$name" "$etcd" "$ready" "$ip"
  done <<<"$1"
}

# Reads the wanted nodes from stdin, up to the end line, into wanted (names, in order),
# is_wanted[NAME]=1 and host_keys[NAME]="TYPE BASE64". Dies on anything else: these lines
# decide which nodes stay.
read_wanted() {
  local line word name type blob extra end="# k3s-ha: end of nodes"
  while IFS= read -r line; do
    if [[ $line == "$end" ]]; then
      return 0
    fi
    read -r word name type blob extra <<<"$line"
    if [[ $word != node || -n $extra ]] || ! k3s_ha_is_node_name "${name:-}"; then
      k3s_ha_die "stdin line '$(k3s_ha_brief "$line")' is not 'node NAME [TYPE BASE64]'"
    fi
    if [[ -n ${is_wanted[$name]:-} ]]; then
      k3s_ha_die "node $name is wanted twice on stdin"
    fi
    if [[ -n $type ]]; then
      if [[ ! $type =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|rsa-sha2-(256|512))$ || ! ${blob:-} =~ ^[A-Za-z0-9+/]+={0,3}$ ]]; then
        k3s_ha_die "the host key given for $name is not TYPE BASE64 of an SSH host key"
      fi
      host_keys[$name]="$type $blob"
    fi
    wanted+=("$name")
    is_wanted[$name]=1
  done
  k3s_ha_die "stdin ended before the line '$end' (cut short?): nothing was changed"
}

# Reads every Node's cluster label and recorded host key into current[NAME]="LABEL|KEY", with
# one list call. The annotation is the node's own kubelet's to write and may hold any text, a
# newline too, which could forge a line: if a line does not parse or a name comes twice,
# nothing read is trusted (current stays empty) and every wanted node is patched.
read_current() {
  local out name label key
  local -A seen=()
  out=$(reconcile_kubectl get nodes -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.metadata.labels.k3s-ha\.io/cluster}{"|"}{.metadata.annotations.k3s-ha\.io/ssh-host-key}{"\n"}{end}') || return 0
  while IFS='|' read -r name label key; do
    [[ -n $name ]] || continue
    if ! k3s_ha_is_node_name "$name" || [[ -n ${seen[$name]:-} || ! $key =~ ^([-a-z0-9]+\ [A-Za-z0-9+/]+={0,3})?$ ]]; then
      k3s_ha_warn "the node list does not parse cleanly (at '$(k3s_ha_brief "$name")'): patching every wanted node"
      current=()
      return 0
    fi
    seen[$name]=1
    current[$name]="$label|$key"
  done <<<"$out"
}

# Usage: wanted_node_patch NAME
# The merge patch (RFC 7386: null removes a key) that labels a wanted node and records its
# pinned host key, or removes one recorded before when it has none now.
wanted_node_patch() {
  local key=null
  if [[ -n ${host_keys[$1]:-} ]]; then
    key="\"${host_keys[$1]}\""
  fi
  printf '{"metadata":{"labels":{"%s":"%s"},"annotations":{"%s":%s}}}\n' \
    "$CLUSTER_LABEL" "$K3S_HA_CLUSTER" "$HOST_KEY_ANNOTATION" "$key"
}

main() {
  local name etcd ready ip role wanted=() leaving_agents=() leaving_servers=() row rows patched=0 removals=0
  local -A host_keys=() is_wanted=() current=()
  exec 1>&2
  k3s_ha_require_param K3S_HA_CLUSTER
  k3s_ha_require_param K3S_HA_SSH_USER
  k3s_ha_require_ssh_params
  drain_timeout=${K3S_DRAIN_TIMEOUT:-120}
  lb_grace=${K3S_HA_LB_GRACE_SECONDS:-0}
  k3s_ha_require_seconds lb_grace
  k3s_ha_require_seconds drain_timeout
  # The label value and the keys go into a JSON patch: only characters that need no quoting.
  if [[ ! $K3S_HA_CLUSTER =~ ^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$ ]]; then
    k3s_ha_die "K3S_HA_CLUSTER must be a Kubernetes label value (letters, digits, '-', '_', '.', at most 63), got '$K3S_HA_CLUSTER'"
  fi
  max_removals=${K3S_HA_REMOVALS_PER_RUN:-20}
  k3s_ha_require_seconds max_removals
  read_wanted
  k3s_ha_load_ssh_key

  read_current
  for name in "${wanted[@]}"; do
    if [[ ${current[$name]:-} == "$K3S_HA_CLUSTER|${host_keys[$name]:-}" ]]; then
      continue
    fi
    patched=$((patched + 1))
    reconcile_kubectl patch node "$name" --type=merge -p "$(wanted_node_patch "$name")" >&2 \
      || k3s_ha_die "could not label node $name; is it in this cluster? (A server's evict step removes a dead server's Node before that server joins, since etcd refuses the join while it is a member: if $name is that dead server, replace its machine or take it out of the configuration, then run pulumi up again)"
  done

  k3s_ha_log "recorded $patched of ${#wanted[@]} wanted nodes (the others were already right)"
  rows=$(k3s_ha_node_rows) || k3s_ha_die "the API on this server does not list the nodes"
  while IFS='|' read -r name etcd ready ip; do
    [[ -n $name ]] || continue
    if [[ $etcd == true ]]; then
      leaving_servers+=("$name|$ready|$ip")
    else
      leaving_agents+=("$name|$ready|$ip")
    fi
  done < <(leaving_rows "$rows")

  if ((${#leaving_agents[@]} + ${#leaving_servers[@]} == 0)); then
    k3s_ha_log "no node has left the configuration of cluster $K3S_HA_CLUSTER"
    return 0
  fi
  # Dead (not Ready) leaving servers before live ones: etcd refuses to remove a started member
  # when the active members left would be below quorum, and allows removing one that is down
  # (mayRemoveMember, etcd server/etcdserver/server.go; issue 17.3).
  local down=() up=()
  for row in "${leaving_servers[@]}"; do
    IFS='|' read -r name ready ip <<<"$row"
    if [[ $ready == True ]]; then
      up+=("$row")
    else
      down+=("$row")
    fi
  done
  leaving_servers=("${down[@]}" "${up[@]}")
  for row in "${leaving_agents[@]/%/|agent}" "${leaving_servers[@]/%/|server}"; do
    [[ -n $row ]] || continue
    if ((removals >= max_removals)); then
      k3s_ha_die "removed $removals nodes, as many as this step's time bound covers; $((${#leaving_agents[@]} + ${#leaving_servers[@]} - removals)) more have left the configuration: run pulumi up again to go on"
    fi
    IFS='|' read -r name ready ip role <<<"$row"
    remove_node "$name" "$role" "$ready" "$ip"
    removals=$((removals + 1))
  done
}

main "$@"
