"""A recording mock engine: runs a Pulumi program under `pulumi.runtime.set_mocks` and keeps
every RegisterResource request as the engine would receive it (inputs with their secret
markers, dependencies, parent, options).

Differences from a real engine, handled here on purpose:
- `additional_secret_outputs` is applied to the returned state, as the engine does (the
  SDK's MockMonitor does not).
- Cloud-computed outputs (instance IPs, load balancer DNS names, ids) are invented
  deterministically from resource names, so two runs of the same program agree.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format, struct_pb2
from k3s_ha.bootstrap.commands import parse_command
from k3s_ha.bootstrap.steps.membership import NODES_END
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
LEAVING_UNKNOWN = "# k3s-ha mock: the leaving nodes, which step_model.plan_up fills in\n"
"""The mock's stdout for record-members: see step_model.model_leaving."""
MOCK_CA_HASH = hashlib.sha256(b"the mock cluster's server-ca.crt").hexdigest()
"""What the mock's init step reports as the cluster CA's SHA-256."""
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
SIG_KEY = "4dabf18193072939515e22adb298388d"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

SAMPLE_KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
users:
- name: default
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
"""


def archive_hash(directory: str) -> str:
    """What the engine stores as a directory archive's `hash`: it hashes a tar of the files'
    relative names and contents, with a fixed mode and no times (pulumi archive.go
    addNextFileToTar), so the absolute path does not count. This hashes the same facts."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _reveal(value: Any, path: str, secret_paths: set[str]) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == ARCHIVE_SIG and "path" in value:
            # The engine computes the hash on registration (source_eval.go, ComputeAssetHashes)
            # and keeps {sig, hash, path} in state, never the content.
            return {**value, "hash": archive_hash(value["path"])}
        if value.get(SIG_KEY) == SECRET_SIG:
            secret_paths.add(path)
            return _reveal(value.get("value"), path, secret_paths)
        return {k: _reveal(v, f"{path}.{k}" if path else k, secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v, f"{path}[{i}]", secret_paths) for i, v in enumerate(value)]
    return value


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict
    secret_paths: set[str]
    dependencies: set[str]
    property_dependencies: dict[str, set[str]]
    options: dict
    # What the (mock) provider returned: the resource's id and its output state, secrets
    # revealed. The step model (step_model.py) reads which outputs a replacement renews.
    id: str = ""
    outputs: dict = field(default_factory=dict)

    def is_secret(self, key: str) -> bool:
        return any(p == key or p.startswith(key + ".") or p.startswith(key + "[") for p in self.secret_paths)


def standin_public_key(name: str) -> str:
    """The stand-in public key the mock gives the tls.PrivateKey called `name`: deterministic,
    in the authorized_keys format pulumi-tls returns (with a trailing newline)."""
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(name.encode()).digest())
    return f"ssh-ed25519 {blob.decode()}\n"


def standin_private_key(name: str) -> str:
    """The stand-in (unusable) OpenSSH private key text of the tls.PrivateKey called `name`."""
    digest = hashlib.sha256(b"private" + name.encode()).hexdigest()
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in-{digest}\n-----END OPENSSH PRIVATE KEY-----\n"


def instance_id(name: str) -> str:
    """The id the mock gives the instance called `name`."""
    return "i-" + hashlib.sha256(name.encode()).hexdigest()[:17]


def script_name(create: Any) -> str | None:
    """The node script a command text runs (commands.parse_command), or None."""
    parsed = parse_command(create) if isinstance(create, str) else None
    return parsed[0] if parsed else None


@dataclass(frozen=True)
class MemberRow:
    """One line of record-members' stdin, "ROLE NAME ADDRESS [TYPE BASE64] [@TIME]"."""

    role: str
    address: str
    key: tuple[str, ...]
    stamp: str | None

    def leaving(self, name: str) -> str:
        """The line record-members.sh prints when this node has left (no stamp)."""
        return " ".join(["leaving", name, self.role, self.address, *self.key]) + "\n"


def member_rows(stdin: str | None) -> dict[str, MemberRow]:
    """record-members' stdin (membership.member_lines), up to its end line: NAME -> row."""
    rows: dict[str, MemberRow] = {}
    for words in (line.split() for line in (stdin or "").split(NODES_END)[0].splitlines()):
        if words[:1] not in (["server"], ["agent"]):
            continue
        stamp = words.pop()[1:] if words[-1].startswith("@") else None
        rows[words[1]] = MemberRow(words[0], words[2], tuple(words[3:]), stamp)
    return rows


def node_name(start_step: str) -> str:
    """The Node name the mock's start step `<cluster>-<host>-start` reports (a host name)."""
    return "ip-" + hashlib.sha256(start_step.encode()).hexdigest()[:8]


def _ip(name: str, prefix: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return f"{prefix}.{digest[0]}.{digest[1] % 250 + 1}"


class CloudMocks(pulumi.runtime.Mocks):
    """Invents what AWS, pulumi-random and pulumi-command would return."""

    def __init__(self, zones=("eu-west-1a", "eu-west-1b", "eu-west-1c"), ami="ami-0a1b2c3d4e5f60718"):
        self.zones = list(zones)
        self.ami = ami
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        name = args.name
        typ = args.typ
        rid = f"{name}-id"
        if typ == "aws:ec2/instance:Instance":
            rid = instance_id(name)
            state.update(publicIp=_ip(name, "198.51"), privateIp=_ip(name, "10.0"), arn=f"arn:aws:ec2:::instance/{rid}")
        elif typ == "aws:iam/accessKey:AccessKey":
            # The provider returns the key's secret once, at creation, as a secret output
            # (pulumi_aws iam/access_key.py additional_secret_outputs ["secret", ...]).
            state.update(secret=f"mock-secret-access-key-of-{name}")
        elif typ == "aws:ec2/eip:Eip":
            state.update(publicIp=_ip(name, "203.0"), allocationId=f"eipalloc-{name}")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            state.update(
                dnsName=f"{name}-0123456789.elb.eu-west-1.amazonaws.com",
                arn=f"arn:aws:elasticloadbalancing:::loadbalancer/net/{name}",
            )
        elif typ in ("aws:lb/targetGroup:TargetGroup", "aws:lb/listener:Listener"):
            state["arn"] = f"arn:aws:elasticloadbalancing:::{name}"
        elif typ == "aws:s3/bucket:Bucket":
            state.update(bucket=f"{name}-20261126", region="eu-west-1", arn=f"arn:aws:s3:::{name}-20261126")
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            state.update(name=f"{name}-generated", arn=f"arn:aws:iam::123456789012:role/{name}")
        elif typ == "aws:ec2/keyPair:KeyPair":
            state["keyName"] = state.get("keyName") or f"{name}-key"
        elif typ == "tls:index/privateKey:PrivateKey":
            state.update(privateKeyOpenssh=standin_private_key(name), publicKeyOpenssh=standin_public_key(name))
        elif typ == "random:index/randomPassword:RandomPassword":
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
            seed = hashlib.sha256(name.encode()).digest() * 2
            state["result"] = "".join(alphabet[b % len(alphabet)] for b in seed[: int(state.get("length", 16))])
        elif typ == "command:remote:Command":
            script = script_name(state.get("create", ""))
            if script == "print-kubeconfig":
                state["stdout"] = SAMPLE_KUBECONFIG
            elif script == "start-server" and parse_command(state["create"])[1].get("K3S_HA_INIT") == "1":
                state["stdout"] = f"{MOCK_CA_HASH} created\n"  # the init step: a new cluster
            elif script in ("start-server", "start-agent"):
                state["stdout"] = node_name(name) + "\n"  # the start scripts print the Node name
            elif script == "record-members":
                # Which nodes left depends on the member record the cluster holds, which the
                # mock cannot know: step_model.plan_up puts in what record-members.sh prints.
                state["stdout"] = LEAVING_UNKNOWN
            elif script == "install-k3s":
                # The node name and that K3s never ran there: a first `up` of fresh machines,
                # each installed at its own second of 2026-01-01.
                at = 1767225600 + int(hashlib.sha256(name.encode()).hexdigest()[:4], 16)
                state["stdout"] = f"{node_name(name.removesuffix('-install') + '-start')} fresh boot-{name} {at}\n"
            else:
                state["stdout"] = ""
            state["stderr"] = ""
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": self.ami, "name": "ubuntu-noble-24.04"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": "eu-west-1", "name": "eu-west-1", "id": "eu-west-1"}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": list(self.zones),
                "zoneIds": [f"euw1-az{i}" for i in range(len(self.zones))],
                "id": "eu-west-1",
            }
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: CloudMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        secret_paths: set[str] = set()
        inputs = _reveal(json_format.MessageToDict(request.object), "", secret_paths)
        outputs = _reveal(json_format.MessageToDict(response.object), "", set()) if response.object else {}
        timeouts = request.customTimeouts
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                custom=request.custom,
                inputs=inputs,
                secret_paths=secret_paths,
                dependencies=set(request.dependencies),
                property_dependencies={k: set(v.urns) for k, v in request.propertyDependencies.items()},
                options={
                    "ignoreChanges": list(request.ignoreChanges),
                    "additionalSecretOutputs": list(request.additionalSecretOutputs),
                    "deleteBeforeReplace": request.deleteBeforeReplace,
                    "retainOnDelete": request.retainOnDelete,
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "customTimeouts": {"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete},
                    "provider": request.provider,
                },
                id=response.id,
                outputs=outputs,
            )
        )
        # The engine marks these outputs secret; do the same so the SDK sees what it would.
        if request.additionalSecretOutputs and response.object:
            state = json_format.MessageToDict(response.object)
            for key in request.additionalSecretOutputs:
                if key in state:
                    state[key] = {SIG_KEY: SECRET_SIG, "value": state[key]}
            obj = struct_pb2.Struct()
            json_format.ParseDict(state, obj)
            response.object.CopyFrom(obj)
        return response


@dataclass
class Run:
    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    calls: list[tuple[str, dict]]
    warnings: list[str] = field(default_factory=list)

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, got {[r.urn for r in matches]}"
        return matches[0]

    def urn(self, name: str) -> str:
        return self.named(name).urn

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def depends_on(self, name: str, other: str) -> bool:
        """Directly, as the engine would order them."""
        return self.urn(other) in self.named(name).dependencies

    def transitively_depends_on(self, name: str, other: str) -> bool:
        target = self.urn(other)
        seen: set[str] = set()
        stack = list(self.named(name).dependencies)
        while stack:
            urn = stack.pop()
            if urn == target:
                return True
            if urn in seen:
                continue
            seen.add(urn)
            stack.extend(self.by_urn(urn).dependencies if any(r.urn == urn for r in self.registrations) else [])
        return False


class _WarningCatcher:
    def __init__(self):
        self.messages: list[str] = []

    def debug(self, msg, *a, **k):
        pass

    def info(self, msg, *a, **k):
        pass

    def warning(self, msg, *a, **k):
        self.messages.append(str(msg))

    def error(self, msg, *a, **k):
        self.messages.append(str(msg))


def run(
    program: Callable[[], dict[str, Any] | None],
    config: dict[str, Any] | None = None,
    secret_keys: tuple[str, ...] = (),
    preview: bool = False,
    project: str = "k3s-ha",
    stack: str = "dev",
    mocks: CloudMocks | None = None,
) -> Run:
    """Run `program` in a fresh event loop under the recording monitor.

    `config` keys are project keys (`servers`) or namespaced (`aws:region`); values that are
    not strings are JSON-encoded as the CLI would.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = mocks or CloudMocks()
    monitor = RecordingMonitor(mocks)
    catcher = _WarningCatcher()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor, logger=catcher)  # type: ignore[arg-type]
    all_config = {}
    for key, value in (config or {}).items():
        full = key if ":" in key else f"{project}:{key}"
        all_config[full] = value if isinstance(value, str) else json.dumps(value)
    pulumi.runtime.set_all_config(all_config, [k if ":" in k else f"{project}:{k}" for k in secret_keys])

    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    async def body():
        exported = program() or {}
        for key, value in exported.items():
            out = pulumi.Output.from_input(value)
            outputs[key] = await out.future(with_unknowns=True)
            if await out.is_secret():
                secret_outputs.add(key)

    try:
        try:
            loop.run_until_complete(run_pulumi_func(body))
        except Exception as error:
            error.registrations = monitor.registrations  # type: ignore[attr-defined]
            raise
    finally:
        pulumi_settings.reset_options()
        loop.close()
        asyncio.set_event_loop(None)
    return Run(monitor.registrations, outputs, secret_outputs, mocks.calls, catcher.messages)


def program_file(path) -> Callable[[], dict[str, Any]]:
    """A Pulumi program file (a `__main__.py`) as a program for `run`, its exports captured."""
    import runpy

    def program() -> dict[str, Any]:
        exported: dict[str, Any] = {}
        original = pulumi.export

        def capture(name, value):
            exported[name] = value
            original(name, value)

        pulumi.export = capture  # type: ignore[assignment]
        try:
            runpy.run_path(str(path), run_name="__main__")
        finally:
            pulumi.export = original  # type: ignore[assignment]
        return exported

    return program


def main_program() -> dict[str, Any]:
    """The project's own __main__.py, with its exports captured."""

    return program_file(Path(__file__).resolve().parents[2] / "__main__.py")()
