#!/usr/bin/env bash
# Installs what the tests need into a local virtualenv and runs them. CI calls this too.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${K3S_HA_TEST_VENV:-.venv-test}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
# The lab (tests/lab, marker `lab`) runs hosts with a real sshd, sudo and etcd. As root (CI is
# root on a fresh machine) install what is missing; elsewhere the lab tests skip and say why.
lab_packages=(openssh-server openssh-sftp-server openssh-client sudo etcd-server etcd-client iproute2 curl openssl python3-yaml)
# Not when the lab is deselected (`-m "not lab"`): nothing else needs them.
lab_selected=1
if [[ " $* " == *"not lab"* ]]; then
  lab_selected=0
fi
if ((lab_selected)) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for package in "${lab_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]} > 0)); then
    echo "installing Debian packages for the lab: ${missing[*]}" >&2
    if ! { timeout 600 apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"; } >/dev/null; then
      echo "could not install ${missing[*]}: the lab tests will be skipped" >&2
    fi
  fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# In parallel (pytest-xdist), unless the arguments say otherwise (-n, --numprocesses, -p
# no:xdist): each lab scenario has its own namespaces, login user and root, and spends most of
# its time waiting on K3s's timers: eight workers on two cores, six of them starting on lab
# scenarios and two on the quick tiers, keep both cores busy (docs/development.md).
# worksteal: a worker that runs out of tests takes queued ones from the others, so no
# scenario waits behind another on a busy worker (tests/conftest.py lays out each worker's share).
parallel=(-n 8 --dist worksteal)
if [[ " $* " == *" -n"* || " $* " == *" --numprocesses"* || " $* " == *"no:xdist"* ]]; then
  parallel=()
fi
exec "$venv/bin/python" -m pytest "${parallel[@]}" "$@"
