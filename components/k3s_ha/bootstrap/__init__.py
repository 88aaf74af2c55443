"""The cloud-neutral half: K3s on any hosts reachable over SSH, in HA order.

Nothing here imports `k3s_ha.aws` (a test keeps it so): the same bootstrap runs on EC2, bare
metal or another cloud. `steps/` holds one module per step, in run order.
"""

from .args import HostArgs, K3sBootstrapArgs, SshArgs
from .component import K3sBootstrap

__all__ = ["HostArgs", "K3sBootstrap", "K3sBootstrapArgs", "SshArgs"]
