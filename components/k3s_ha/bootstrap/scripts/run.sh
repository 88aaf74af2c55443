#!/usr/bin/env bash
# Runs one node script of this bundle under the step's time bound; every step's command ends
# in it (bootstrap/commands.py). pulumi-command gives a step no time limit and `session.Run`
# has no keepalive (real-behaviour.md), so this is the step's bound: coreutils `timeout`
# makes itself a process group leader and on expiry signals the whole group (the script and
# everything it started), then kills it 10 s later. --preserve-status: a script that must
# never fail (the evict steps) turns the TERM into success itself (lib.sh
# k3s_ha_never_fail); any other ends with 143 (TERM) or 137 (KILL), reported here.
#
# Usage: bash run.sh SCRIPT SECONDS   (as root, from the verified bundle directory)
set -uo pipefail
script=${1:-} seconds=${2:-}
here=$(dirname "${BASH_SOURCE[0]}")
if [[ ! $script =~ ^[a-z][a-z0-9-]*$ || $script == run || ! -f $here/$script.sh ]]; then
  printf 'k3s-ha: error: bundle %s has no script %s\n' "$here" "${script:-<none>}" >&2
  exit 1
fi
if [[ ! $seconds =~ ^[1-9][0-9]{0,6}$ ]]; then
  printf 'k3s-ha: error: the time bound must be a positive whole number of seconds, got %s\n' "${seconds:-<none>}" >&2
  exit 1
fi
printf 'k3s-ha: %s (bundle %.12s) may take up to %ss\n' "$script" "$(basename "$here")" "$seconds" >&2
status=0
# The bound goes to the script too: an ssh-agent it starts forgets its key by then (lib.sh).
K3S_HA_STEP_SECONDS=$seconds timeout --preserve-status --kill-after=10 "$seconds" bash "$here/$script.sh" || status=$?
if ((status == 143 || status == 137)); then
  printf 'k3s-ha: error: the step did not finish within %ss and was stopped, with everything it had started; see the log above\n' "$seconds" >&2
  status=1
fi
exit "$status"
