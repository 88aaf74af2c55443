"""Entry point of the k3s-ha component provider.

Pulumi's Python language host starts a plugin directory by running `python <directory>`, i.e.
this file, with the engine address as argument. The provider (k3s_ha_provider.py) infers the
package schema from K3sCluster's and K3sBootstrap's type annotations and docstrings
(pulumi.provider.experimental.analyzer) and constructs either for programs written in any
language.

The package is imported from ../components, the same way the repository's own program does:
`pulumi package add` of a Git URL installs the whole repository, so the sibling directory is
there, and no build step or second copy of the code is needed.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "components"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from k3s_ha_provider import serve  # noqa: E402

if __name__ == "__main__":
    serve(sys.argv[1:])
