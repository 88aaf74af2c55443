"""The script bundle: the node scripts, shipped once per host and named by their digest.

One `CopyToRemote` per host puts the scripts directory on the node over SFTP; every other
step runs a short command that names the bundle's digest, the script and its parameters
(commands.py). Why a FileArchive of the directory (pulumi-command v1.2.1, pulumi/pulumi,
read for issue 16; real-behaviour.md):
- The state keeps {sig, hash, path} for a FileArchive, never its content (Go `Archive.Serialize`;
  the Python SDK sends only `path`, rpc.py `serialize_property`), while a StringAsset keeps its
  text. So the bundle step stores a hash, not 80 KB of scripts per host.
- Archives compare by hash alone (`Archive.Equals`), and the engine hands providers only the
  hash (`MarshalArchive` with ElideAssetContents). The hash of a directory archive covers the
  relative file names and contents (tar entries with a fixed mode, no times): the same package
  installed in another virtualenv, at another absolute path, shows no diff and copies nothing.
- `CopyToRemote` re-copies on an update only when the hash or `remotePath` changed, copies a
  directory `dir` (no trailing slash) to `remotePath/dir` (copyController.go `sftpCopy`), never
  deletes anything on the host, and is replaced only by `triggers`.

The copy lands in the login user's home, where that user could still change it. The command
prelude (commands.py) copies it into a root-owned directory named by the digest, checks the
digest there, and only then runs anything from it as root.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

SCRIPT_DIR = Path(__file__).parent / "scripts"
BUNDLE_ROOT = "/var/lib/k3s-ha/bundles"
"""Root-owned; one directory per verified digest."""
UPLOAD_DIR = ".k3s-ha"
"""In the login user's home (SFTP paths are relative to it): CopyToRemote's `remotePath` is
UPLOAD_DIR/bundle-<digest>, and the directory lands inside it as `scripts`."""


def bundle_files(root: Path) -> list[Path]:
    """Every regular file in the bundle, by relative path in byte order (what `find . -type f
    -print0 | LC_ALL=C sort -z` lists on the node)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: ("./" + p.relative_to(root).as_posix()).encode())


DIGEST_HEX = 32
"""The digest is SHA-256 cut to its first 128 bits (32 hex digits), as SHA-512/256-style
truncation keeps SHA-256's security per bit: 2^128 work to forge an upload that passes the
check. It appears in every command, the upload path and the bundle's directory name, so each
digit costs state at every step (issue 16's budget)."""


def digest(root: Path | None = None) -> str:
    """SHA-256 of the `sha256sum` listing of the bundle's files (default: SCRIPT_DIR), its first
    DIGEST_HEX digits: the same value the command prelude computes on the node with `find | sort
    -z | xargs -0 sha256sum | sha256sum | cut -c1-32`."""
    return _digest(root or SCRIPT_DIR)


@functools.cache
def _digest(root: Path) -> str:
    listing = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(root).as_posix()}\n"
        for p in bundle_files(root)
    )
    return hashlib.sha256(listing.encode()).hexdigest()[:DIGEST_HEX]


def library_text(root: Path | None = None) -> str:
    """The shell library the role scripts source (lib.sh and its parts, lib/*.sh), as one text:
    for the tests that read what a script reaches."""
    root = root or SCRIPT_DIR
    return "".join(p.read_text() for p in [root / "lib.sh", *sorted((root / "lib").glob("*.sh"))])


def upload_path(bundle_digest: str) -> str:
    """CopyToRemote's remotePath, relative to the login user's home."""
    return f"{UPLOAD_DIR}/bundle-{bundle_digest}"


def uploaded_scripts(bundle_digest: str) -> str:
    """Where the copy's files are on the node, for a shell that expands $HOME (the login's)."""
    return f"$HOME/{upload_path(bundle_digest)}/{SCRIPT_DIR.name}"
