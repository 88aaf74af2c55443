"""The one place that turns a script call into remote command text.

Python decides the parameters; bash does the node's work. A command is

    sudo -n env K=V ... bash -c '<prelude>' k3s-ha DIGEST SCRIPT SECONDS ROOT "$HOME/<upload>"

Parameters are plain, non-secret values (they show in previews and `ps`); secrets only ever
travel on stdin. The scripts themselves are not in the text: they reach the host once, in the
bundle step (bundle.py), and the prelude runs them from a root-owned copy checked against
DIGEST. So every command stays a few hundred bytes, and a changed script still changes
every command (its DIGEST), which runs each step again.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

import pulumi

from . import bundle

_PARAM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SCRIPT_NAME = re.compile(r"^[a-z][a-z0-9-]*$")

# Runs as root. $1 digest, $2 script, $3 seconds, $4 bundle root, $5 the uploaded copy (in the
# login user's home, which that user may still change: nothing is run from there).
# - First use of a digest on the host: copy the upload into a fresh root-owned directory
#   (mktemp: 0700), refuse anything but files and directories (a symlink could point
#   anywhere), check the digest of what was copied, then rename it into place. Renaming
#   is atomic; a step that raced it finds the directory already there. The system's own
#   tools do this, whatever PATH the login carries.
# - Then run the script under coreutils `timeout`: it makes itself a process group leader
#   and on expiry signals the whole group (the script and what it started), killing it 10 s
#   later. pulumi-command bounds nothing (real-behaviour.md), so this is the step's bound.
#   --preserve-status: a script that must never fail (evict) turns the TERM into success
#   itself (lib.sh k3s_ha_never_fail); any other ends with 143 (TERM) or 137 (KILL).
PRELUDE = r"""set -u
b=$4/$1
if [ ! -f "$b/.verified" ]; then
  (
  PATH=/usr/sbin:/usr/bin:/sbin:/bin
  umask 022
  mkdir -p "$4" && x=$(mktemp -d "$4/.new.XXXXXX") || exit 1
  trap 'rm -rf "$x"' EXIT
  if [ ! -d "$5" ] || [ -n "$(find "$5" ! -type f ! -type d -print -quit)" ] || ! cp -R "$5/." "$x/"; then
    echo "k3s-ha: error: no usable script bundle at $5 (the step that copies it must run first; run pulumi up again)" >&2; exit 1
  fi
  h=$(cd "$x" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum)
  if [ "${h%% *}" != "$1" ]; then
    echo "k3s-ha: error: the script bundle at $5 does not have digest $1 (changed after the copy?); nothing was run" >&2; exit 1
  fi
  chmod -R u=rwX,go=rX "$x" && touch "$x/.verified" && { mv -T "$x" "$b" 2>/dev/null || [ -f "$b/.verified" ]; }
  ) || exit 1
fi
echo "k3s-ha: $2 (bundle ${1:0:12}) may take up to $3s" >&2
timeout --preserve-status -k 10 "$3" bash "$b/$2.sh"; c=$?
if [ $c = 143 ] || [ $c = 137 ]; then
  echo "k3s-ha: error: the step did not finish within $3s and was stopped, with everything it had started; see the log above" >&2; c=1
fi
exit $c"""


def remote_command(
    script: str,
    params: Mapping[str, str],
    seconds: int,
    *,
    digest: str | None = None,
    bundle_root: str = bundle.BUNDLE_ROOT,
    upload: str | None = None,
) -> str:
    """The command text that runs `script` from the bundle as root, with `params` in its
    environment, bounded to `seconds`. `bundle_root` and `upload` are for tests."""
    if not _SCRIPT_NAME.match(script):
        raise ValueError(f"script name {script!r} must be a lower-case file name without .sh")
    for key in params:
        if not _PARAM_NAME.match(key):
            raise ValueError(f"script parameter {key!r} must be an upper-case shell name")
    if not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"a step's time bound must be a positive whole number of seconds, got {seconds!r}")
    digest = digest or bundle.digest()
    # The upload path is expanded by the login user's shell: $HOME is the login's home, where
    # SFTP put the copy (bundle.py); under sudo it would be root's.
    upload = shlex.quote(upload) if upload is not None else f'"{bundle.uploaded_scripts(digest)}"'
    env = " ".join(f"{key}={shlex.quote(str(params[key]))}" for key in sorted(params))
    prefix = f"sudo -n env {env} " if env else "sudo -n "
    args = " ".join(shlex.quote(a) for a in (digest, script, str(seconds), bundle_root))
    return f"{prefix}bash -c {_QUOTED_PRELUDE} k3s-ha {args} {upload}"


_QUOTED_PRELUDE = shlex.quote(PRELUDE)


def remote_command_input(script: str, params: Mapping[str, pulumi.Input[str]], seconds: int) -> pulumi.Input[str]:
    """remote_command for parameters that may be Outputs (node names, addresses)."""
    late = [k for k, v in params.items() if isinstance(v, pulumi.Output)]
    if not late:
        return remote_command(script, params, seconds)  # type: ignore[arg-type]
    if len(late) == 1:  # the common case (a node's name): one apply, no gather
        key = late[0]
        return params[key].apply(lambda value: remote_command(script, {**params, key: value}, seconds))  # type: ignore[union-attr]
    return pulumi.Output.all(*[params[k] for k in late]).apply(
        lambda values: remote_command(script, {**params, **dict(zip(late, values))}, seconds)
    )


def parse_command(text: str) -> tuple[str, dict[str, str]] | None:
    """The script a command text runs and its parameters, or None when `text` is not one of
    ours: for tools that read a state file or a preview (and the tests and benchmarks)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    if "k3s-ha" not in words or words[:2] != ["sudo", "-n"]:
        return None
    marker = words.index("k3s-ha")
    params = {}
    for word in words[2 : words.index("bash")]:
        key, sep, value = word.partition("=")
        if sep and _PARAM_NAME.match(key):
            params[key] = value
    return words[marker + 2], params
