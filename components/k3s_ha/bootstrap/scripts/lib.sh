# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
# Shared helpers for the k3s-ha node scripts, one file per concern under lib/ (each role script
# sources this file, which sources them all, in this order).
#
# Every role script sources it, from the root-owned bundle directory Pulumi runs it in
# (bootstrap/commands.py) or from wherever a person runs it by hand, so it must only define
# functions: anything it did at top level would run before every role script.
#
# Secrets (tokens, config.yaml, the kubeconfig) arrive on stdin and must never reach
# stdout, stderr or a command line: Pulumi keeps command output in its state and logs,
# and command lines are visible to every user through `ps`.
set -euo pipefail

_k3s_ha_lib=$(dirname "${BASH_SOURCE[0]}")/lib
# shellcheck source=lib/core.sh
. "$_k3s_ha_lib/core.sh"
# shellcheck source=lib/layout.sh
. "$_k3s_ha_lib/layout.sh"
# shellcheck source=lib/service.sh
. "$_k3s_ha_lib/service.sh"
# shellcheck source=lib/cluster.sh
. "$_k3s_ha_lib/cluster.sh"
# shellcheck source=lib/ssh.sh
. "$_k3s_ha_lib/ssh.sh"
# shellcheck source=lib/record.sh
. "$_k3s_ha_lib/record.sh"
# shellcheck source=lib/peers.sh
. "$_k3s_ha_lib/peers.sh"
# shellcheck source=lib/config.sh
. "$_k3s_ha_lib/config.sh"
# shellcheck source=lib/registries.sh
. "$_k3s_ha_lib/registries.sh"
# shellcheck source=lib/manifests.sh
. "$_k3s_ha_lib/manifests.sh"
# shellcheck source=lib/versions.sh
. "$_k3s_ha_lib/versions.sh"
