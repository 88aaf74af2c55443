"""k3s-ha: one HA K3s cluster per stack. Reads stack config, builds the cluster, exports outputs."""

import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).parent / "components"))

from k3s_ha import K3sCluster  # noqa: E402
from k3s_ha.aws.args import DEFAULTS  # noqa: E402
from k3s_ha.stack_config import cluster_args_from_config  # noqa: E402

cluster_args = cluster_args_from_config(pulumi.Config())
cluster = K3sCluster(pulumi.get_stack(), cluster_args)

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("apiEndpoint", cluster.api_endpoint)
pulumi.export("serverPublicIps", cluster.server_public_ips)
pulumi.export("serverPrivateIps", cluster.server_private_ips)
pulumi.export("agentPublicIps", cluster.agent_public_ips)
pulumi.export("agentPrivateIps", cluster.agent_private_ips)
pulumi.export("token", cluster.token)  # secret; etcd snapshots restore only with the token of their time
pulumi.export("sshUser", cluster_args.get("ssh_user", DEFAULTS["ssh_user"]))
pulumi.export("sshPrivateKey", cluster.ssh_private_key)  # secret; null unless the key was generated
pulumi.export("bastionPublicIp", cluster.bastion_public_ip)  # null unless privateNodes (k3s-ha's bastion)
pulumi.export("bastionHostKey", cluster.bastion_host_key)  # its pinned SSH host key, for known_hosts
