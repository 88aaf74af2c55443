"""The package schema exactly as the component provider in provider/ serves it (shared by the
tests): the SDK's inference, plus the package version and descriptions in schema names."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest
from k3s_ha import K3sBootstrap, K3sBootstrapArgs, K3sCluster, K3sClusterArgs
from k3s_ha.bootstrap.args import HostArgs, ProxyArgs, SshArgs

PROVIDER_DIR = Path(__file__).resolve().parents[2] / "provider"
if str(PROVIDER_DIR) not in sys.path:
    sys.path.insert(0, str(PROVIDER_DIR))

from k3s_ha_provider import K3sHaProvider  # noqa: E402

PACKAGE = "k3s-ha"
TOKEN = "k3s-ha:index:K3sCluster"


def string_annotations() -> list[str]:
    """Annotations the analyzer would get as bare strings. It reads them with
    inspect.get_annotations() and no eval_str, so `from __future__ import annotations` (or a
    quoted type) hands it "K3sClusterArgs" instead of the class."""
    found = []
    for owner, found_annotations in (
        ("K3sCluster.__init__", inspect.get_annotations(K3sCluster.__init__)),
        ("K3sClusterArgs", inspect.get_annotations(K3sClusterArgs)),
        ("K3sCluster", inspect.get_annotations(K3sCluster)),
        ("K3sBootstrap.__init__", inspect.get_annotations(K3sBootstrap.__init__)),
        ("K3sBootstrap", inspect.get_annotations(K3sBootstrap)),
        *((cls.__name__, inspect.get_annotations(cls)) for cls in (K3sBootstrapArgs, HostArgs, SshArgs, ProxyArgs)),
    ):
        found += [
            f"{owner}.{name}: {value!r}"
            for name, value in found_annotations.items()
            if isinstance(value, str) and name != "return"
        ]
    return found


def provider() -> K3sHaProvider:
    """What `python provider/` serves; fails the test, with the cause, when the SDK's inference
    rejects the component."""
    try:
        return K3sHaProvider()
    except Exception as error:  # noqa: BLE001 - reported with its cause
        strings = string_annotations()
        cause = (
            "annotations are strings, not types (" + "; ".join(strings[:3]) + ", ...): remove "
            "`from __future__ import annotations` from components/k3s_ha/aws/args.py and cluster.py "
            "(or bootstrap/args.py and component.py)"
            if strings
            else "see the error above"
        )
        pytest.fail(
            f"The SDK's schema inference rejects a component: {type(error).__name__}: {error}\nCause: {cause}",
            pytrace=False,
        )


def inferred_schema() -> dict:
    return json.loads(provider().schema)
