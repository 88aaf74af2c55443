"""Opt-in end-to-end test against a real AWS account. NOT run here or in CI.

It needs: K3S_HA_E2E=1, AWS credentials in the environment, the Pulumi CLI on PATH, boto3
(`pip install boto3`), and K3S_HA_E2E_SSH_KEY (path to a private key whose `.pub` sits beside
it) and K3S_HA_E2E_CIDR (your address as a /32). It costs money for the minutes it runs.
Nobody on this project has been able to run it (no AWS access in the workplace): it is kept
correct by reading, against the Automation API and Kubernetes API documentation.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.environ.get("K3S_HA_E2E") != "1"
    or not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
    or shutil.which("pulumi") is None,
    reason="opt-in: set K3S_HA_E2E=1 with AWS credentials and the Pulumi CLI installed",
)


def _get(kubeconfig: str, path: str) -> bytes:
    """GET a Kubernetes API path with the kubeconfig's client certificate (stdlib only)."""
    cfg = yaml.safe_load(kubeconfig)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = (Path(tmp) / n for n in ("ca.crt", "client.crt", "client.key"))
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        with urllib.request.urlopen(cluster["server"] + path, context=context, timeout=15) as response:
            return response.read()


def _api(kubeconfig: str, path: str) -> dict:
    return json.loads(_get(kubeconfig, path))


def _conditions(node: dict) -> dict:
    return {c["type"]: c["status"] for c in node["status"]["conditions"]}


def test_three_servers_survive_the_loss_of_one():
    from pulumi import automation as auto

    boto3 = pytest.importorskip("boto3")
    key_path = Path(os.environ["K3S_HA_E2E_SSH_KEY"])
    backend = tempfile.mkdtemp(prefix="k3s-ha-e2e-")
    stack = auto.create_or_select_stack(
        stack_name="e2e",
        work_dir=str(ROOT),
        opts=auto.LocalWorkspaceOptions(
            env_vars={"PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "e2e-only"}
        ),
    )
    try:
        region = os.environ.get("AWS_REGION", "eu-west-1")
        stack.set_all_config(
            {
                "aws:region": auto.ConfigValue(region),
                "k3s-ha:servers": auto.ConfigValue("3"),
                "k3s-ha:agents": auto.ConfigValue("0"),
                "k3s-ha:sshPublicKey": auto.ConfigValue(key_path.with_suffix(".pub").read_text().strip()),
                "k3s-ha:sshPrivateKey": auto.ConfigValue(key_path.read_text(), secret=True),
            }
        )
        # Arrays go through --path, which the CLI understands (set_all_config takes strings).
        stack.set_config("sshAllowedCidrs[0]", auto.ConfigValue(os.environ["K3S_HA_E2E_CIDR"]), path=True)
        stack.set_config("apiAllowedCidrs[0]", auto.ConfigValue(os.environ["K3S_HA_E2E_CIDR"]), path=True)
        result = stack.up(on_output=print)
        kubeconfig = result.outputs["kubeconfig"].value

        nodes = _api(kubeconfig, "/api/v1/nodes")["items"]
        servers = [n for n in nodes if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]]
        assert len(servers) == 3
        for node in servers:
            conditions = _conditions(node)
            assert conditions.get("Ready") == "True", node["metadata"]["name"]
            assert conditions.get("EtcdIsVoter") == "True", node["metadata"]["name"]
            # The AWS integration (docs/aws.md): named after its private DNS name, initialised
            # by the CCM before its start step ended.
            assert node["metadata"]["name"].endswith(".compute.internal"), node["metadata"]["name"]
            assert node["spec"]["providerID"].startswith("aws:///"), node["spec"]
            assert "node.cloudprovider.kubernetes.io/uninitialized" not in str(node["spec"].get("taints"))
        classes = _api(kubeconfig, "/apis/storage.k8s.io/v1/storageclasses")["items"]
        default = [
            c
            for c in classes
            if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
        ]
        assert [c["metadata"]["name"] for c in default] == ["gp3-encrypted"], "local-path is off, ours the default"

        # Stop one server that is not the kubeconfig's target: the API must keep answering.
        ips = result.outputs["serverPublicIps"].value
        ec2 = boto3.client("ec2", region_name=region)
        found = ec2.describe_instances(Filters=[{"Name": "ip-address", "Values": [ips[1]]}])
        instance_id = found["Reservations"][0]["Instances"][0]["InstanceId"]
        ec2.stop_instances(InstanceIds=[instance_id])
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance_id])
        deadline = time.time() + 300
        while True:
            try:
                ready = _get(kubeconfig, "/readyz")
                nodes = _api(kubeconfig, "/api/v1/nodes")["items"]
                break
            except Exception:  # noqa: BLE001 - the API may blip while etcd re-elects
                if time.time() > deadline:
                    raise
                time.sleep(10)
        assert ready == b"ok"
        assert len(nodes) == 3
    finally:
        stack.destroy(on_output=print)
        stack.workspace.remove_stack("e2e")
