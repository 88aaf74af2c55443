#!/bin/sh
# STAND-IN for the K3s installer (get.k3s.io, k3s-io/k3s install.sh), not the real one. Lab
# only: the lab serves it to the node scripts as K3S_INSTALL_URL=file://... and replaces
# @RELEASE@ with the stand-in release (tests/lab/standin/k3s_standin.py) when it sets up.
# It follows the real installer's order of steps (install.sh, "run the install process"):
#   download (here: build the multicall wrapper for INSTALL_K3S_VERSION), create_symlinks,
#   create_killall, create_uninstall, systemd_disable (ALWAYS disables and removes the unit
#   and its env file from /etc/systemd/system, even with INSTALL_K3S_SYSTEMD_DIR elsewhere), create_env_file (every K3S_*/CONTAINERD_* line of `sh -c export`,
#   mode 0600), create_service_file (Type=notify), service_enable_and_start (returns early
#   with INSTALL_K3S_SKIP_ENABLE=true, so the unit stays disabled; skips the start with
#   INSTALL_K3S_SKIP_START=true).
set -eu
release=@RELEASE@
info() { echo "[INFO]  $*"; }
fatal() {
  echo "[ERROR] $*" >&2
  exit 1
}

[ -n "${INSTALL_K3S_VERSION:-}" ] || fatal "stand-in installer needs INSTALL_K3S_VERSION (no channel lookups in the lab)"
[ -f "$release" ] || fatal "stand-in release $release is missing"
bin_dir=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
systemd_dir=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
exec_args=${INSTALL_K3S_EXEC:-}
if [ -z "$exec_args" ]; then
  if [ -n "${K3S_URL:-}" ]; then exec_args=agent; else exec_args=server; fi
fi
case $exec_args in
  server*) system_name=k3s ;;
  agent*) system_name=k3s-agent ;;
  *) fatal "stand-in installer: INSTALL_K3S_EXEC must start with server or agent" ;;
esac
if [ -n "${K3S_URL:-}" ] && [ "$system_name" = k3s ] && [ "${exec_args%% *}" != server ]; then
  system_name=k3s-agent
fi
service_file=$systemd_dir/$system_name.service
env_file=$service_file.env
uninstall=$bin_dir/$system_name-uninstall.sh
[ "$system_name" = k3s ] && uninstall=$bin_dir/k3s-uninstall.sh

# download_and_verify: the real installer fetches the release binary; the stand-in release is
# a self-extracting multicall wrapper (cmd/k3s/main.go stageAndRun: the binary extracts itself
# under DATA_DIR/data/<hash>/ and execs the copy there, so a running process never runs the
# file that an upgrade replaces).
info "Downloading stand-in k3s $INSTALL_K3S_VERSION"
mkdir -p "$bin_dir" "$systemd_dir"
tmp=$(mktemp "$bin_dir/.k3s.XXXXXX")
{
  cat <<EOF
#!/bin/bash
# STAND-IN k3s multicall wrapper (not the real k3s), written by the lab's stand-in installer.
set -euo pipefail
version='$INSTALL_K3S_VERSION'
EOF
  cat <<'EOF'
self=$(readlink -f "${BASH_SOURCE[0]}")
hash=$(sha256sum <"$self" | cut -c1-16)
data=/var/lib/rancher/k3s/data/$hash
if [[ ! -f $data/bin/k3s ]]; then
  mkdir -p "$data/bin"
  sed '1,/^__STANDIN_RELEASE__$/d' "$self" >"$data/bin/.k3s.$$"
  mv -f "$data/bin/.k3s.$$" "$data/bin/k3s"
fi
K3S_STANDIN_VERSION=$version exec /usr/bin/python3 "$data/bin/k3s" "$(basename "$0")" "$@"
__STANDIN_RELEASE__
EOF
  cat "$release"
} >"$tmp"
chmod 755 "$tmp"
mv -f "$tmp" "$bin_dir/k3s"

# create_symlinks (none with INSTALL_K3S_SYMLINK=skip)
if [ "${INSTALL_K3S_SYMLINK:-}" != skip ]; then
  [ -e "$bin_dir/kubectl" ] || ln -s k3s "$bin_dir/kubectl"
fi

# create_killall + create_uninstall
cat >"$bin_dir/k3s-killall.sh" <<EOF
#!/bin/sh
# stand-in k3s-killall.sh
for unit in k3s k3s-agent; do systemctl stop "\$unit" 2>/dev/null || true; done
EOF
chmod 755 "$bin_dir/k3s-killall.sh"
uninstall_name=${uninstall##*/}
cat >"$uninstall" <<EOF
#!/bin/sh
# stand-in $uninstall_name (the real one is written by install.sh create_uninstall)
set -x
$bin_dir/k3s-killall.sh
systemctl disable $system_name || true
rm -f "$service_file" "$env_file"
rm -rf /etc/rancher/k3s /run/k3s /var/lib/rancher/k3s /etc/rancher/node
rm -f "$bin_dir/kubectl" "$bin_dir/k3s" "$bin_dir/k3s-killall.sh"
rm -f "$uninstall"
EOF
chmod 755 "$uninstall"

# systemd_disable: always, before the unit is written again, and on /etc/systemd/system
# whatever INSTALL_K3S_SYSTEMD_DIR says (the real one names that path).
systemctl disable "$system_name" >/dev/null 2>&1 || true
rm -f "/etc/systemd/system/$system_name.service" "/etc/systemd/system/$system_name.service.env"

# create_env_file: the real installer's exact pipeline.
info "env: Creating environment file $env_file"
touch "$env_file"
chmod 0600 "$env_file"
# shellcheck disable=SC2034,SC2086,SC2162
sh -c export | while read x v; do echo $v; done | grep -E '^(K3S|CONTAINERD)_' >"$env_file" || true

info "systemd: Creating service file $service_file"
cat >"$service_file" <<EOF
[Unit]
Description=Lightweight Kubernetes (stand-in)

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-$env_file
KillMode=process
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$bin_dir/k3s \\
    $exec_args
EOF

# service_enable_and_start
[ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ] && exit 0
info "systemd: Enabling $system_name unit"
systemctl enable "$service_file" >/dev/null
systemctl daemon-reload >/dev/null
[ "${INSTALL_K3S_SKIP_START:-}" = true ] && exit 0
info "systemd: Starting $system_name"
systemctl restart "$system_name"
