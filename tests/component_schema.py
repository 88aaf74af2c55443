"""The package schema exactly as the component provider host infers it (shared by the tests)."""

from __future__ import annotations

import inspect
import json

import pytest
from k3s_ha import K3sCluster, K3sClusterArgs
from pulumi.provider.experimental.component import ComponentProvider

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
    ):
        found += [
            f"{owner}.{name}: {value!r}"
            for name, value in found_annotations.items()
            if isinstance(value, str) and name != "return"
        ]
    return found


def provider() -> ComponentProvider:
    """What `component_provider_host([K3sCluster], "k3s-ha")` builds; fails the test, with the
    cause, when the SDK's inference rejects the component."""
    try:
        return ComponentProvider([K3sCluster], PACKAGE)
    except Exception as error:  # noqa: BLE001 - reported with its cause
        strings = string_annotations()
        cause = (
            "annotations are strings, not types (" + "; ".join(strings[:3]) + ", ...): remove "
            "`from __future__ import annotations` from components/k3s_ha/aws/args.py and cluster.py"
            if strings
            else "see the error above"
        )
        pytest.fail(
            f"The SDK's schema inference rejects K3sCluster: {type(error).__name__}: {error}\nCause: {cause}",
            pytrace=False,
        )


def inferred_schema() -> dict:
    return json.loads(provider().schema)
