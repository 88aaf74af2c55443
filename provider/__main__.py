"""Entry point of the k3s-ha component provider.

Pulumi's Python language host starts a plugin directory by running `python <directory>`, i.e.
this file, with the engine address as argument. The provider then infers the package schema
from K3sCluster's type annotations and docstrings (pulumi.provider.experimental.analyzer) and
constructs K3sCluster for programs written in any language.

The package is imported from ../components, the same way the repository's own program does:
`pulumi package add` of a Git URL installs the whole repository, so the sibling directory is
there, and no build step or second copy of the code is needed.
"""

import sys
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parent.parent / "components"
if str(COMPONENTS) not in sys.path:
    sys.path.insert(0, str(COMPONENTS))

from k3s_ha import K3sCluster  # noqa: E402
from pulumi.provider.experimental import component_provider_host  # noqa: E402

if __name__ == "__main__":
    # The name must equal the package part of the type token K3sCluster registers with
    # (`k3s-ha:index:K3sCluster`). Only K3sCluster is hosted; K3sBootstrap is used from Python.
    component_provider_host([K3sCluster], "k3s-ha")
