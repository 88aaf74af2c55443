#!/usr/bin/env bash
# Download phase: puts the pinned K3s binary and the role's systemd unit on a new node, or
# stages the binary beside the running one on a node that has K3s (an upgrade: start-*.sh
# swaps it in), without enabling or starting anything. Runs on every node in parallel right after boot;
# starting is left to start-server.sh / start-agent.sh, which Python runs in the order
# etcd needs (servers one at a time).
#
# Parameters (environment): K3S_VERSION (required, e.g. v1.36.4+k3s1), K3S_ROLE (required,
# server|agent), K3S_INSTALL_URL (default https://get.k3s.io), K3S_HA_UPGRADE_FROM (optional:
# the release this node must run before moving to K3S_VERSION's minor), K3S_HA_CLOUD_INIT_TIMEOUT
# (seconds, default 600), K3S_HA_REMOVAL_KEY and K3S_HA_SSH_USER (the authorized_keys line
# of this cluster's removal key, put into that user's file: lib.sh
# k3s_ha_authorize_removal_key), K3S_HA_DOWNLOAD_TIMEOUT (seconds for fetching the installer,
# default 300), K3S_HA_INSTALLER_TIMEOUT (seconds for the installer, which downloads the
# binary, default 900), and for tests K3S_HA_BIN_DIR, K3S_HA_SYSTEMD_DIR, K3S_HA_STAGE_DIR
# (contracts.InstallK3s;
# its time bound is the sum of those three defaults plus 120).
# stdout: one line, "NAME fresh|running BOOT_ID TIME": the node name K3s registers this
# machine under, whether K3s ran on it before this step, its boot id (the kernel's, which the
# kubelet reports as its Node's status.nodeInfo.bootID) and this step's time (epoch seconds):
# record-members.sh tells this machine's Node from an older machine's by these.
#
# The unit's enabled state is the same afterwards as before: install.sh always disables
# the unit and, with INSTALL_K3S_SKIP_ENABLE, never enables it again (k3s-io/k3s
# install.sh, systemd_disable and service_enable_and_start), so an upgrade that stopped
# half way would leave a node that a reboot takes down. The installer runs with a clean
# environment: it copies K3S_*/CONTAINERD_* lines of `export` into the unit's env file
# (create_env_file), and sudo's SUDO_COMMAND holds this whole script.
# Refuses (exit 1, before downloading) a version the installed k3s cannot move to: see
# k3s_ha_check_upgrade in lib.sh. stdin is not read. No secret is needed here: tokens go
# into config.yaml later.
set -euo pipefail
if ! declare -F k3s_ha_log >/dev/null; then
  # shellcheck source-path=SCRIPTDIR source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

K3S_HA_CLOUD_INIT_TIMEOUT=${K3S_HA_CLOUD_INIT_TIMEOUT:-600}
K3S_HA_DOWNLOAD_TIMEOUT=${K3S_HA_DOWNLOAD_TIMEOUT:-300}
K3S_HA_INSTALLER_TIMEOUT=${K3S_HA_INSTALLER_TIMEOUT:-900}
k3s_ha_require_seconds K3S_HA_CLOUD_INIT_TIMEOUT
k3s_ha_require_seconds K3S_HA_DOWNLOAD_TIMEOUT
k3s_ha_require_seconds K3S_HA_INSTALLER_TIMEOUT

k3s_ha_require_param K3S_VERSION
k3s_ha_require_param K3S_ROLE
# The version ends up in the installer's download URL: accept only release tag shapes
# (the same ones versions.py accepts; tags before v1.17 had no +k3sN, some had +k3s.N).
if ! k3s_ha_version_key "$K3S_VERSION" >/dev/null; then
  k3s_ha_die "K3S_VERSION must look like v1.36.4+k3s1, got '$K3S_VERSION'"
fi
case $K3S_ROLE in
  server) service=k3s ;;
  agent) service=k3s-agent ;;
  *) k3s_ha_die "K3S_ROLE must be server or agent, got '$K3S_ROLE'" ;;
esac

version=$K3S_VERSION
role=$K3S_ROLE
install_url=${K3S_INSTALL_URL:-https://get.k3s.io}
k3s_bin=$(k3s_ha_k3s_bin)
unit_path=${K3S_HA_SYSTEMD_DIR:-/etc/systemd/system}/$service.service
# Only the report below may reach stdout (fd 3): Python reads it.
exec 3>&1 1>&2

# A version the installed one cannot move to (downgrade, skipped minor, Dqlite to etcd) is
# refused before anything is downloaded, so the node keeps running what it has.
current=$(k3s_ha_installed_version)
k3s_ha_check_upgrade "$current" "$version" "${K3S_HA_UPGRADE_FROM:-}"

# Whether K3s ran on this machine before this step: a rebuilt agent's stale Node is removed
# only for a machine that did not (record-members.sh).
ran_before=fresh
if systemctl is-active --quiet "$service" 2>/dev/null; then
  ran_before=running
fi
node_name=$(k3s_ha_node_name)
boot_id=-
if [[ -r /proc/sys/kernel/random/boot_id ]]; then
  read -r boot_id </proc/sys/kernel/random/boot_id || boot_id=-
fi
installed_at=$(date +%s)
report() {
  printf '%s %s %s %s\n' "$node_name" "$ran_before" "${boot_id:--}" "$installed_at" >&3
}

# On first boot cloud-init may still be running apt or writing files the installer
# touches. Its exit status only reports how cloud-init fared, which is not our business.
if command -v cloud-init >/dev/null 2>&1; then
  k3s_ha_log "waiting for cloud-init to finish"
  timeout --foreground "$((K3S_HA_CLOUD_INIT_TIMEOUT > 0 ? K3S_HA_CLOUD_INIT_TIMEOUT : 1))" \
    cloud-init status --wait >/dev/null 2>&1 || true
fi

# This cluster's removal key, which the first server's removals and evict steps log in with
# (never the operator's key: issue 18.3).
if [[ -n ${K3S_HA_REMOVAL_KEY:-} ]]; then
  k3s_ha_require_param K3S_HA_SSH_USER
  k3s_ha_authorize_removal_key "$K3S_HA_SSH_USER" "$K3S_HA_REMOVAL_KEY"
fi

if [[ $current == "$version" && -f $unit_path ]]; then
  k3s_ha_log "k3s $version and $unit_path are already installed; nothing to download"
  report
  exit 0
fi
# A node with K3s installed gets the new release staged beside it, not in its place: what it
# runs after a reboot changes only at its own start step, which for agents comes after every
# server has moved, so no kubelet is ever newer than the API servers (Kubernetes version skew
# policy; issue 17.2). start-*.sh swaps it in (lib.sh k3s_ha_swap_in_staged).
stage=""
if [[ -n $current && -f $unit_path ]]; then
  stage=$(k3s_ha_stage_dir "$version")
  if [[ $(k3s_ha_version_of "$stage/k3s") == "$version" ]]; then
    k3s_ha_log "k3s $version is already staged at $stage; its start step puts it in place"
    report
    exit 0
  fi
  k3s_ha_log "staging k3s $version at $stage beside the installed $current ($role)"
else
  k3s_ha_log "installing k3s $version ($role)"
fi

installer=$(mktemp "${TMPDIR:-/tmp}/k3s-ha-install.XXXXXX")
k3s_ha_at_exit rm -f -- "$installer"
status=0
timeout --foreground "$(k3s_ha_at_least_one "$K3S_HA_DOWNLOAD_TIMEOUT")" curl -sSfL --proto =https --proto-redir =https --connect-timeout 20 --max-time 120 \
  --retry 10 --retry-delay 5 --retry-connrefused -o "$installer" "$install_url" </dev/null || status=$?
if ((status == 124)); then
  k3s_ha_die "downloading the K3s installer from $install_url did not finish within ${K3S_HA_DOWNLOAD_TIMEOUT}s"
elif ((status != 0)); then
  k3s_ha_die "could not download the K3s installer from $install_url"
fi

# Only what the installer needs, and nothing it would copy into the unit's env file.
installer_env=(
  PATH="$PATH"
  INSTALL_K3S_VERSION="$version"
  INSTALL_K3S_SKIP_START=true
  INSTALL_K3S_SKIP_ENABLE=true
  INSTALL_K3S_EXEC="$role"
)
if [[ -n ${TMPDIR:-} ]]; then
  installer_env+=(TMPDIR="$TMPDIR")
fi
if [[ -n $stage ]]; then
  # Binary, killall and uninstall scripts, unit and env file all go to the stage (install.sh
  # setup_env: BIN_DIR, SYSTEMD_DIR); no kubectl/crictl/ctr links (create_symlinks).
  rm -rf -- "$stage"
  if ! { mkdir -p "$stage" && chmod 0700 "$stage"; }; then
    k3s_ha_die "could not create $stage"
  fi
  installer_env+=(INSTALL_K3S_BIN_DIR="$stage" INSTALL_K3S_SYSTEMD_DIR="$stage/systemd" INSTALL_K3S_SYMLINK=skip)
else
  if [[ -n ${K3S_HA_BIN_DIR:-} ]]; then
    installer_env+=(INSTALL_K3S_BIN_DIR="$K3S_HA_BIN_DIR")
  fi
  if [[ -n ${K3S_HA_SYSTEMD_DIR:-} ]]; then
    installer_env+=(INSTALL_K3S_SYSTEMD_DIR="$K3S_HA_SYSTEMD_DIR")
  fi
fi

# A node whose unit was enabled (it ran before) gets it enabled again whatever happens
# from here on, the installer failing or timing out included.
if [[ $(systemctl is-enabled "$service" 2>/dev/null) == enabled ]]; then
  k3s_ha_at_exit k3s_ha_enable_again "$service"
fi
# Staging too, the installer removes the live unit and its env file: its systemd_disable
# names /etc/systemd/system whatever INSTALL_K3S_SYSTEMD_DIR says (k3s-io/k3s install.sh).
# They are put back whatever happens (before the unit is enabled again: at-exit runs last
# first), so the running K3s keeps its unit.
if [[ -n $stage ]]; then
  k3s_ha_at_exit k3s_ha_put_back_unit "$stage/live-unit" "$unit_path"
  if ! { mkdir -p "$stage/live-unit" && cp -p -- "$unit_path" "$stage/live-unit/" \
    && { [[ ! -e $unit_path.env ]] || cp -p -- "$unit_path.env" "$stage/live-unit/"; }; }; then
    k3s_ha_die "could not keep a copy of $unit_path before staging"
  fi
fi

# Its own process group (timeout without --foreground): on expiry the installer and
# everything it started (curl has no time limit there) are signalled.
status=0
timeout --kill-after=10 "$(k3s_ha_at_least_one "$K3S_HA_INSTALLER_TIMEOUT")" \
  env -i "${installer_env[@]}" sh "$installer" </dev/null || status=$?
if ((status == 124 || status == 137)); then
  k3s_ha_die "the K3s installer did not finish within ${K3S_HA_INSTALLER_TIMEOUT}s (K3S_HA_INSTALLER_TIMEOUT)"
elif ((status != 0)); then
  k3s_ha_die "the K3s installer failed (exit $status)"
fi

if [[ -n $stage ]]; then
  staged=$(k3s_ha_version_of "$stage/k3s")
  if [[ $staged != "$version" ]]; then
    k3s_ha_die "after staging, $stage/k3s reports version '${staged:-none}' instead of $version"
  fi
  k3s_ha_log "staged k3s $version; $k3s_bin stays $current until this node's start step"
  report
  exit 0
fi
# With INSTALL_K3S_SKIP_ENABLE the installer skips its daemon-reload, so systemd would
# keep using the previous unit file (or not know the new one) when start-*.sh runs.
systemctl daemon-reload || k3s_ha_die "systemctl daemon-reload failed after installing k3s"

current=$(k3s_ha_installed_version)
if [[ $current != "$version" ]]; then
  k3s_ha_die "after installing, $k3s_bin reports version '${current:-none}' instead of $version"
fi
if [[ ! -f $unit_path ]]; then
  k3s_ha_die "the installer did not create $unit_path"
fi
k3s_ha_log "installed k3s $version ($role)"
report
