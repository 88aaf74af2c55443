"""The one place that turns a script call into remote command text.

Python decides the parameters; bash does the node's work. The scripts are not in the text:
they reach each host once, in its bundle step (bundle.py), and run from a root-owned copy
named by the bundle's digest. A step's command is one of two:

    sudo -n env K=V ... bash ROOT/DIGEST/run.sh SCRIPT SECONDS
    sudo -n env K=V ... bash -c '<prelude>' k3s-ha DIGEST SCRIPT SECONDS ROOT "$HOME/<upload>"

The second is the first step on each host (a server's version guard, an agent's install): its
prelude checks the uploaded copy against DIGEST and installs it under ROOT; every other step
on the host depends on that one, so the short form finds the bundle there. Either way a
changed script changes DIGEST, and so every command, which runs each step again. Parameters
are plain, non-secret values (they show in previews and `ps`); secrets only ever travel on
stdin. bundle/run.sh puts the step's time bound around the script.
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
# login user's home, which that user may still change: nothing is run from there). On the
# first use of a digest on the host it copies the upload into a fresh root-owned directory
# (mktemp: 0700) and checks the digest of what was copied; the checked copy's adopt.sh then
# refuses anything but files and directories and renames it into place. The system's own
# tools do this, whatever PATH the login carries (the script itself gets the login's PATH and
# umask, as sudo gives them). Then the script runs from there (run.sh).
PRELUDE = r"""b=$4/$1
[ -f "$b/run.sh" ] || { x=$(PATH=/usr/bin:/bin; umask 022; mkdir -p "$4" && d=$(mktemp -d "$4/.new.XXXXXX") && {
  cp -R "$5/." "$d/" && [ "$(cd "$d" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum |
    sha256sum | cut -c1-32)" = "$1" ] && echo "$d" || rm -rf "$d"; })
  [ -n "$x" ] && exec bash "$x/adopt.sh" "$x" "$b" "$2" "$3"
  echo "k3s-ha: error: no bundle with digest $1 at $5; nothing was run (run pulumi up again)" >&2; exit 1; }
exec bash "$b/run.sh" "$2" "$3"
"""


def remote_command(
    script: str,
    params: Mapping[str, str],
    seconds: int,
    *,
    installs_bundle: bool = False,
    digest: str | None = None,
    bundle_root: str = bundle.BUNDLE_ROOT,
    upload: str | None = None,
) -> str:
    """The command text that runs `script` from the bundle as root, with `params` in its
    environment, bounded to `seconds`. `installs_bundle`: the first step on its host, which
    checks and installs the uploaded bundle first. `bundle_root` and `upload` are for tests."""
    if not _SCRIPT_NAME.match(script):
        raise ValueError(f"script name {script!r} must be a lower-case file name without .sh")
    for key in params:
        if not _PARAM_NAME.match(key):
            raise ValueError(f"script parameter {key!r} must be an upper-case shell name")
    if not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"a step's time bound must be a positive whole number of seconds, got {seconds!r}")
    digest = digest or bundle.digest()
    env = " ".join(f"{key}={shlex.quote(str(params[key]))}" for key in sorted(params))
    prefix = f"sudo -n env {env} " if env else "sudo -n "
    if not installs_bundle:
        run = shlex.quote(f"{bundle_root}/{digest}/run.sh")
        return f"{prefix}bash {run} {script} {seconds}"
    # The upload path is expanded by the login user's shell: $HOME is the login's home, where
    # SFTP put the copy (bundle.py); under sudo it would be root's.
    upload = shlex.quote(upload) if upload is not None else f'"{bundle.uploaded_scripts(digest)}"'
    args = " ".join(shlex.quote(a) for a in (digest, script, str(seconds), bundle_root))
    return f"{prefix}bash -c {_QUOTED_PRELUDE} k3s-ha {args} {upload}"


_QUOTED_PRELUDE = shlex.quote(PRELUDE)


def remote_command_input(
    script: str, params: Mapping[str, pulumi.Input[str]], seconds: int, installs_bundle: bool = False
) -> pulumi.Input[str]:
    """remote_command for parameters that may be Outputs (node names, addresses)."""

    def text(values: Mapping[str, str]) -> str:
        return remote_command(script, values, seconds, installs_bundle=installs_bundle)

    late = [k for k, v in params.items() if isinstance(v, pulumi.Output)]
    if not late:
        return text(params)  # type: ignore[arg-type]
    if len(late) == 1:  # the common case (a node's name): one apply, no gather
        key = late[0]
        return params[key].apply(lambda value: text({**params, key: value}))  # type: ignore[union-attr]
    return pulumi.Output.all(*[params[k] for k in late]).apply(
        lambda values: text({**params, **dict(zip(late, values))})
    )


def parse_command(text: str) -> tuple[str, dict[str, str]] | None:
    """The script a command text runs and its parameters, or None when `text` is not one of
    ours: for tools that read a state file or a preview (and the tests and benchmarks)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    if words[:2] != ["sudo", "-n"] or "bash" not in words:
        return None
    after = words[words.index("bash") + 1 :]
    if after[:1] == ["-c"] and "k3s-ha" in after:
        script = after[after.index("k3s-ha") + 2]
    elif len(after) == 3 and after[0].endswith("/run.sh"):
        script = after[1]
    else:
        return None
    params = {}
    for word in words[2 : words.index("bash")]:
        key, sep, value = word.partition("=")
        if sep and _PARAM_NAME.match(key):
            params[key] = value
    return script, params
