# shellcheck shell=sh
# stand-in, not the real get.k3s.io installer: the stand-in curl serves this file (with
# @STANDINS@, @STATE@ and @DATA_DIR@ filled in). It records its environment and arguments,
# then does what the real install.sh (k3s-io/k3s install.sh, "run the install process")
# does to a node, in its order:
# - puts "k3s" in INSTALL_K3S_BIN_DIR: a wrapper around the k3s stand-in, with the version
#   it was installed as. The node's installed binary is the one in the script's K3S_HA_BIN_DIR
#   (@LIVE_BIN@): its version is the state file "version", which the wrapper sets from its own
#   whenever it runs from there (so a staged wrapper that start-*.sh moved in place becomes
#   the installed version); one elsewhere (a stage) reports its own and changes nothing;
# - systemd_disable: ALWAYS `systemctl disable` the unit, then removes the unit file and
#   its env file from /etc/systemd/system, whatever INSTALL_K3S_SYSTEMD_DIR says (here: the
#   script's K3S_HA_SYSTEMD_DIR, @LIVE_UNITS@);
# - create_env_file: every line of `export` whose text after the first word starts with
#   K3S_ or CONTAINERD_ goes into the unit's env file (and *_PROXY lines). A multi-line
#   value such as sudo's SUDO_COMMAND spills its lines into that output, so lines of a
#   script's text that read "WORD K3S_..." land in the env file too;
# - writes the unit; with INSTALL_K3S_SKIP_ENABLE=true returns before enabling it again
#   (service_enable_and_start), so the unit stays disabled; otherwise enables it and, unless
#   INSTALL_K3S_SKIP_START=true, restarts it.
# State files: installer_fails (exit 1 after disabling, like a failed step in the middle),
# installer_hangs (never returns). It refuses to touch the real system directories.
set -eu
state=@STATE@
standins=@STANDINS@
env | sort >"$state/installer.env"
PATH=$standins:$PATH
STANDIN_STATE=$state
STANDIN_K3S_DATA_DIR=@DATA_DIR@
export STANDIN_STATE STANDIN_K3S_DATA_DIR
echo "$*" >>"$state/installer.log"
bin_dir=${INSTALL_K3S_BIN_DIR:?stand-in installer needs INSTALL_K3S_BIN_DIR}
systemd_dir=${INSTALL_K3S_SYSTEMD_DIR:?stand-in installer needs INSTALL_K3S_SYSTEMD_DIR}
case ${INSTALL_K3S_EXEC:-} in
  server) unit=k3s ;;
  agent) unit=k3s-agent ;;
  *) echo "[ERROR] stand-in installer: unexpected INSTALL_K3S_EXEC" >&2; exit 1 ;;
esac
mkdir -p "$bin_dir" "$systemd_dir"
cat >"$bin_dir/k3s.new" <<WRAPPER
#!/bin/sh
# stand-in, not the real k3s: written by the stand-in installer as ${INSTALL_K3S_VERSION:?}
if [ "\$(cd "\$(dirname "\$0")" && pwd -P)" = "\$(cd "@LIVE_BIN@" 2>/dev/null && pwd -P)" ]; then
  echo "$INSTALL_K3S_VERSION" >"$state/version"
else
  K3S_STANDIN_BINARY_VERSION=$INSTALL_K3S_VERSION
  export K3S_STANDIN_BINARY_VERSION
fi
exec $standins/k3s "\$@"
WRAPPER
chmod 755 "$bin_dir/k3s.new"
mv -f "$bin_dir/k3s.new" "$bin_dir/k3s"
"$bin_dir/k3s" --version >/dev/null

systemctl disable "$unit" >/dev/null 2>&1 || true
rm -f "@LIVE_UNITS@/$unit.service" "@LIVE_UNITS@/$unit.service.env"
if [ -f "$state/installer_hangs" ]; then
  exec sleep 60
fi
if [ -f "$state/installer_fails" ]; then
  echo "[ERROR] stand-in installer told to fail" >&2
  exit 1
fi

export -p | while read -r _ rest; do printf '%s\n' "$rest"; done \
  | grep -E '^(K3S|CONTAINERD)_' >"$systemd_dir/$unit.service.env" || true
export -p | while read -r _ rest; do printf '%s\n' "$rest"; done \
  | grep -Ei '^(NO|HTTP|HTTPS)_PROXY' >>"$systemd_dir/$unit.service.env" || true
chmod 600 "$systemd_dir/$unit.service.env"
printf '[Service]\nEnvironmentFile=-%s\nExecStart=%s/k3s %s\n' "$systemd_dir/$unit.service.env" \
  "$bin_dir" "$INSTALL_K3S_EXEC" >"$systemd_dir/$unit.service"

if [ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ]; then
  echo "[INFO] stand-in installer done (unit left disabled: INSTALL_K3S_SKIP_ENABLE)"
  exit 0
fi
systemctl enable "$unit"
systemctl daemon-reload
if [ "${INSTALL_K3S_SKIP_START:-}" != true ]; then
  systemctl restart "$unit"
fi
echo "[INFO] stand-in installer done"
