#!/usr/bin/env bash
# Installs what the tests need into a local virtualenv and runs them. CI calls this too.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${K3S_HA_TEST_VENV:-.venv-test}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
exec "$venv/bin/python" -m pytest "$@"
