#!/bin/bash
# Runs as root inside a lab host's new network, mount and UTS namespaces (harness.py starts
# it with `ip netns exec NS unshare --mount --uts --propagation private`). It gives the host
# its own name, its own copies of the directories K3s and its installer write, its own
# /etc/hosts (so sudo resolves the host name without DNS), the stand-in systemctl, and then
# becomes the host's real sshd. Its CA bundle holds only the lab mirror's certificate: the
# hosts download nothing from anywhere else.
# The login user's home is the host's own too: what Pulumi copies there (the script bundle,
# bundle.py) must reach each host by its own step, and a re-imaged host starts without it.
# Usage: host-init.sh HOST_ROOT HOSTNAME SSHD_CONFIG HOSTS_FILE STANDIN_SYSTEMCTL MIRROR_CERT USER HOME
set -euo pipefail
root=$1 name=$2 sshd_config=$3 hosts_file=$4 systemctl=$5 mirror_cert=$6 user=$7 home=$8
hostname "$name"
mkdir -p "$root/home"
chown "$user:" "$root/home"
mount --bind "$root/home" "$home"
# Its own kernel boot id, new with every machine (the hosts share this machine's kernel): the
# kubelet reports it as its Node's status.nodeInfo.bootID, and install-k3s.sh reads it.
if [[ ! -s $root/boot_id ]]; then
  cat /proc/sys/kernel/random/uuid >"$root/boot_id"
fi
mount --bind "$root/boot_id" /proc/sys/kernel/random/boot_id
for dir in /etc/rancher /var/lib/rancher /var/lib/k3s-ha /usr/local/bin /usr/local/sbin /etc/systemd/system /run /tmp; do
  mkdir -p "$root$dir"
  mount --bind "$root$dir" "$dir"
done
chmod 1777 /tmp
mount --bind "$hosts_file" /etc/hosts
mount --bind "$mirror_cert" /etc/ssl/certs/ca-certificates.crt
install -m 0755 "$systemctl" /usr/local/sbin/systemctl
# Users' sessions (no /usr/local/sbin on their PATH) call /usr/bin/systemctl, as on a real
# host where one systemctl answers everyone (evict-node.sh asks is-active as the login user).
mount --bind /usr/local/sbin/systemctl /usr/bin/systemctl
mkdir -p /run/sshd
chmod 0755 /run/sshd
exec /usr/sbin/sshd -D -e -f "$sshd_config"
