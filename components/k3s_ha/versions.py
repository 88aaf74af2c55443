"""K3s release tags and what each era of them means for an HA cluster.

Eras (../shared/k3s-notes.md, k3s-io/k3s release notes):
- v1.19.5+k3s1 and later: embedded etcd, supported.
- v1.19.1 to v1.19.4: embedded etcd, experimental.
- v1.0.0 up to (not including) v1.19.1: embedded Dqlite, deprecated, no upgrade path to etcd.
- before v1.0.0: no HA datastore at all.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_K3S_VERSION = "v1.36.4+k3s1"  # stable channel on 2026-08-27 (k3s PR #14553)

_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:-rc(\d+))?(?:\+k3s\.?(\d+))?$")


class Era(enum.Enum):
    ETCD = "etcd"
    EXPERIMENTAL_ETCD = "experimental-etcd"
    DQLITE = "dqlite"


@dataclass(frozen=True, order=True)
class K3sVersion:
    """A parsed K3s release tag, ordered by release."""

    major: int
    minor: int
    patch: int
    k3s: int
    tag: str

    @property
    def era(self) -> Era:
        key = (self.major, self.minor, self.patch)
        if key >= (1, 19, 5):
            return Era.ETCD
        if key >= (1, 19, 1):
            return Era.EXPERIMENTAL_ETCD
        return Era.DQLITE


def parse_version(tag: object, field: str = "k3sVersion") -> K3sVersion:
    """Parse a K3s release tag such as v1.36.4+k3s1, or raise ConfigError naming `field`."""
    if not isinstance(tag, str) or not (match := _TAG.match(tag.strip())):
        raise ConfigError(
            field,
            f"{tag!r} is not a K3s release tag",
            f"use a tag from the K3s releases page, e.g. {DEFAULT_K3S_VERSION}",
        )
    major, minor, patch, _rc, k3s = match.groups()
    version = K3sVersion(int(major), int(minor), int(patch), int(k3s or 0), tag.strip())
    if (version.major, version.minor) >= (1, 17) and k3s is None:
        raise ConfigError(
            field,
            f"{tag!r} has no +k3sN suffix; K3s release tags since v1.17 carry one",
            f"write it as the release is tagged, e.g. {tag.strip()}+k3s1",
        )
    if version.major < 1:
        raise ConfigError(
            field,
            f"{tag} predates v1.0.0 and has no HA datastore",
            f"use {DEFAULT_K3S_VERSION} or another release from v1.19.5+k3s1 on",
        )
    return version


@dataclass(frozen=True)
class UpgradePrerequisite:
    """A minor version that every node must reach from a minimum release of the one before."""

    target: tuple[int, int]
    """The (major, minor) being moved to."""
    minimum: str
    """The release every node must run before moving to `target`."""
    why: str


# The one table of minimum source releases, by target minor, with its sources. The version guard
# (check-upgrade.sh, install-k3s.sh) refuses a move to the target minor while any node runs a
# release below `minimum`, naming it.
UPGRADE_PREREQUISITES = (
    # K3s v1.34 embeds etcd 3.6. etcd's upgrade guide (etcd.io docs, upgrades/upgrade_3_6):
    # "make sure that all of your 3.5 members are updated to 3.5.26 or later"; the etcd blog
    # (2025, zombie_members_upgrade): "make sure to update to v3.5.26 or later first". A
    # 3-server EC2 cluster whose servers had been replaced failed v1.33.7 -> v1.34.3
    # (k3s-io/k3s#13485). etcd 3.5.26 is in v1.33.7+k3s3 (k3s-io/k3s#13493; docs.k3s.io release
    # notes v1.33.X: etcd v3.5.26-k3s1, "K3s v1.34 Upgrade Warning"), and in v1.32.11+k3s3 on the
    # v1.32 line (#13494), which must move to v1.33 first anyway (one minor at a time).
    UpgradePrerequisite(
        (1, 34),
        "v1.33.7+k3s3",
        "K3s v1.34 embeds etcd 3.6, and every etcd 3.5 member must run 3.5.26 or later first "
        "(etcd's upgrade guide, zombie members; k3s-io/k3s#13485)",
    ),
)


def upgrade_prerequisite(target: K3sVersion) -> UpgradePrerequisite | None:
    """The minimum source release for a move to `target`'s minor, if its minor needs one."""
    return next((p for p in UPGRADE_PREREQUISITES if p.target == (target.major, target.minor)), None)


# --- the AWS cloud integration's charts, pinned here and nowhere else -----------------------


@dataclass(frozen=True)
class Chart:
    """A Helm chart K3s's helm controller installs from a HelmChart resource (aws/cloud_integration.py)."""

    repo: str
    name: str
    version: str


AWS_CCM_CHART = Chart("https://kubernetes.github.io/cloud-provider-aws", "aws-cloud-controller-manager", "0.0.11")
"""kubernetes/cloud-provider-aws charts/aws-cloud-controller-manager/Chart.yaml 0.0.11 (appVersion
v1.35.0, gh-pages index.yaml 2026-03-25): the newest chart; its image is set per Kubernetes minor below."""

AWS_CCM_IMAGES: dict[int, str] = {
    27: "v1.27.10",
    28: "v1.28.11",
    29: "v1.29.10",
    30: "v1.30.10",
    31: "v1.31.9",
    32: "v1.32.8",
    33: "v1.33.4",
    34: "v1.34.3",
    35: "v1.35.2",
    36: "v1.36.1",
}
"""Kubernetes minor -> the cloud controller manager release for it: "compatibility is ONLY
guaranteed between that release and the corresponding Kubernetes version" (cloud-provider-aws
docs/README.md). The newest tag of each release branch in kubernetes/cloud-provider-aws at
63ec440 (2026-07-07); a K3s minor without a row is refused while the integration is on."""

AWS_EBS_CSI_CHART = Chart("https://kubernetes-sigs.github.io/aws-ebs-csi-driver", "aws-ebs-csi-driver", "2.64.0")
"""kubernetes-sigs/aws-ebs-csi-driver charts/aws-ebs-csi-driver/Chart.yaml 2.64.0 (appVersion
1.64.0, kubeVersion >=1.17.0-0; gh-pages index.yaml 2026-08-18)."""
