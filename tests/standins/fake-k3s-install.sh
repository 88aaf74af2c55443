# shellcheck shell=sh
# stand-in, not the real get.k3s.io installer: the stand-in curl serves this file. It
# records its environment and arguments, then puts a fake k3s binary and the role's unit
# where the INSTALL_K3S_* variables say. It refuses to touch the real system directories.
set -eu
state=${STANDIN_STATE:?}
env | sort >"$state/installer.env"
echo "$*" >>"$state/installer.log"
if [ -f "$state/installer_fails" ]; then
  echo "[ERROR] stand-in installer told to fail" >&2
  exit 1
fi
bin_dir=${INSTALL_K3S_BIN_DIR:?stand-in installer needs INSTALL_K3S_BIN_DIR}
systemd_dir=${INSTALL_K3S_SYSTEMD_DIR:?stand-in installer needs INSTALL_K3S_SYSTEMD_DIR}
case ${INSTALL_K3S_EXEC:-} in
  server) unit=k3s.service ;;
  agent) unit=k3s-agent.service ;;
  *) echo "[ERROR] stand-in installer: unexpected INSTALL_K3S_EXEC" >&2; exit 1 ;;
esac
mkdir -p "$bin_dir" "$systemd_dir"
cat >"$bin_dir/k3s.new" <<EOT
#!/bin/sh
# stand-in, not the real k3s: written by the stand-in installer
echo "k3s version $INSTALL_K3S_VERSION (stand-in)"
echo "go version go1.25.0 (stand-in)"
EOT
chmod 755 "$bin_dir/k3s.new"
mv -f "$bin_dir/k3s.new" "$bin_dir/k3s"
printf '[Service]\nExecStart=%s/k3s %s\n' "$bin_dir" "$INSTALL_K3S_EXEC" >"$systemd_dir/$unit"
echo "[INFO] stand-in installer done"
