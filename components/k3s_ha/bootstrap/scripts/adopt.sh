#!/usr/bin/env bash
# The end of a host's first step (bootstrap/commands.py PRELUDE), as root: the prelude has
# copied the login user's upload into COPY, a fresh root-owned directory the login user
# cannot change, and checked its digest there. This refuses a copy holding anything but files
# and directories (a symlink could point anywhere; the digest lists regular files only),
# makes it readable to all and writable by root alone, and renames it to BUNDLE: atomic, and
# a step that raced it finds BUNDLE there. Then it runs the step's script from BUNDLE.
#
# Usage: bash COPY/adopt.sh COPY BUNDLE SCRIPT SECONDS
set -uo pipefail
path=$PATH # the script gets the PATH sudo gave the step; the tools here are the system's
PATH=/usr/bin:/bin
copy=${1:?} bundle=${2:?}
trap 'rm -rf -- "$copy"' EXIT
if [[ -n $(find "$copy" ! -type f ! -type d -print -quit) ]]; then
  printf 'k3s-ha: error: the uploaded bundle holds something other than files and directories; nothing was run (run pulumi up again)\n' >&2
  exit 1
fi
if ! chmod -R u=rwX,go=rX "$copy" || ! { mv -T "$copy" "$bundle" 2>/dev/null || [[ -f $bundle/run.sh ]]; }; then
  printf 'k3s-ha: error: could not install the bundle at %s; nothing was run\n' "$bundle" >&2
  exit 1
fi
trap - EXIT
rm -rf -- "$copy" # left only when another step installed the same bundle first
PATH=$path
exec bash "$bundle/run.sh" "$3" "$4"
