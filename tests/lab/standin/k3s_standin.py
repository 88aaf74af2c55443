#!/usr/bin/python3
"""STAND-IN for K3s, not the real k3s. Lab only (tests/lab/), never shipped.

The lab's stand-in installer appends this file to a multicall wrapper and installs it as
/usr/local/bin/k3s on a lab host; the wrapper stages it under the data dir and runs it with
the host's /usr/bin/python3. Its datastore is a REAL etcd (Debian etcd-server 3.4), one member
per server, reached through etcd's JSON gateway; Nodes are keys under /k3s-standin/nodes/.

What it models, each from the real K3s (k3s-io/k3s) source named beside the code:
- the multicall wrapper that execs a staged copy (cmd/k3s/main.go stageAndRun; see install.sh here)
- `server`: embedded etcd (pkg/etcd/etcd.go): the member name file written on EVERY start
  before joining (setName from Register), `IsInitialized` counting only db/etcd/member/wal,
  joins through the registration address's /db/info and MemberAddAsLearner, refusal of a
  duplicate node name, learner promotion and the EtcdIsVoter condition from the etcd
  leader's 15 s ticker (manageTickerTime), etcd-snapshot save, and cluster-reset refused
  while `server:` is set (pkg/cli/server/server.go); a join etcd refuses (another learner, a
  voter down) retried every second;
- a server whose etcd member was removed: its etcd stops, K3s writes a tombstone and runs on
  without etcd (pkg/daemons/executor/embed.go); at its next start the db is moved aside and
  it joins again as a NEW member (pkg/etcd/etcd.go Register). With the stand-in systemctl's
  Restart=always, a removed server that was not disabled comes back at its next restart;
- /ping answering "pong" before etcd and the apiserver are ready, /readyz failing while the
  local etcd member is a learner or down, Ready from kubelet heartbeats with the node
  monitor grace period (so Ready lags a dead node by up to 50 s);
- deleting a server's Node removes its etcd member (pkg/etcd/member_controller.go onRemove)
  and its node password; a node that still runs keeps posting status for a Node that is
  gone ("not found") and registers again on its next start (k3s-io/k3s#5404);
- a new machine under a registered name is refused ("Node password rejected",
  pkg/nodepassword);
- `kubectl` with the calls the node scripts and the lab make;
- the agent token is a kubelet's identity: it may register and report Nodes, read them and
  patch them, and nothing else (no ConfigMap, no delete): Kubernetes' Node authorizer;
- the cluster CA and tokens (pkg/clientaccess/token.go, pkg/daemons/control/deps/deps.go,
  pkg/server/server.go writeToken): the first server makes server-ca.crt (or uses one already
  in server/tls: custom CA certificates), every server gets it from the bootstrap data in
  etcd and serves it at /cacerts with a serving certificate it signed; server/token and
  server/agent-token hold `K10<sha256 of server-ca.crt>::server:` (`::node:`) plus the
  password. A joining server or agent fetches /cacerts first: with a hash in its token a
  different CA is refused before any credential is sent, and what follows is verified
  against that CA; a token without a hash trusts whichever CA answered;
- critical configuration (pkg/cluster/bootstrap.go, `secrets-encryption` among the
  CriticalControlArgs): a server joining with a value that differs from the cluster's is
  refused ("critical configuration value mismatch between servers").

Not modelled: TLS on etcd, the serving certificate's names (clients check its chain to the
cluster CA, not its SANs), Secrets themselves (so `secrets-encryption` is only a setting
compared between servers), containers, the apiserver proper. Pods exist only as records a test puts
under /k3s-standin/pods/<node>/ (for drain: one naming a disruption budget cannot be evicted).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

VERSION = os.environ.get("K3S_STANDIN_VERSION", "v0.0.0+standin")
CONFIG = "/etc/rancher/k3s/config.yaml"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
NODE_PASSWORD_FILE = "/etc/rancher/node/password"
PREFIX = "/k3s-standin/"
FAULTS = "/etc/rancher/k3s-standin-faults"  # lab fault injection, see _refused_versions
# Kubernetes' node-monitor-grace-period default (kube-controller-manager): a node whose
# kubelet stopped posting status still shows its last Ready for this long; 50 s since
# Kubernetes 1.32 (kubernetes/kubernetes#126287; it was 40 s).
NODE_MONITOR_GRACE_SECONDS = 50
# The kubelet's nodeStatusUpdateFrequency default (KubeletConfiguration): it posts its Node's
# status every 10 s (and once at once when it starts), which the node lifecycle controller
# reads against the grace period above.
HEARTBEAT_SECONDS = 10
# pkg/etcd/etcd.go: manageTickerTime = 15 s, the leader's learner-promotion and voter ticker.
MANAGE_TICKER_SECONDS = float(os.environ.get("K3S_STANDIN_MANAGE_SECONDS", "15"))
# wrangler pkg/leader (client-go leader election), which runs K3s's leader-elected controllers,
# the etcd member controller among them: a 45 s lease, renewed within 30 s or given up (K3s
# then exits: OnStoppedLeading is fatal), tried every 2 s. The identity is the host name.
LEASE_SECONDS, RENEW_DEADLINE_SECONDS, LEASE_RETRY_SECONDS = 45, 30, 2
# pkg/deploy/controller.go: the auto-deploy directory is rescanned every 15 s.
DEPLOY_RESCAN_SECONDS = 15
# The helm controller's install job for a chart (pull, render, apply) and the cloud node
# controller's pass over new Nodes; the lab's guesses at their pace, not K3s's numbers.
HELM_INSTALL_SECONDS, CLOUD_SYNC_SECONDS = 10, 5
REFUSED = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f'time="{stamp}" level=info msg="{message}"', file=sys.stderr, flush=True)


def fatal(message: str) -> None:
    print(f'level=fatal msg="{message}"', file=sys.stderr, flush=True)
    sys.exit(1)


# --- config.yaml ------------------------------------------------------------------------


def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    return text


def parse_config(text: str) -> dict:
    """The YAML subset config.yaml uses here: top-level scalars and lists of scalars."""
    result: dict = {}
    key = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("- ") or line.startswith("  - "):
            if key is None:
                continue
            if not isinstance(result.get(key), list):
                result[key] = []
            result[key].append(_scalar(line.split("- ", 1)[1]))
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+):(.*)$", line)
        if match:
            key = match.group(1)
            value = match.group(2).strip()
            if value.startswith("[") and value.endswith("]"):
                result[key] = [_scalar(v) for v in value[1:-1].split(",") if v.strip()]
            else:
                result[key] = _scalar(value) if value else []
    return result


def load_config(path: str = CONFIG) -> dict:
    """config.yaml (or --config), then its .d/*.yaml in order; K3S_* env has lower precedence."""
    config: dict = {}
    for name, value in (("server", "K3S_URL"), ("token", "K3S_TOKEN")):
        if os.environ.get(value):
            config[name] = os.environ[value]
    paths = [path]
    dropins = path + ".d"
    if os.path.isdir(dropins):
        paths += [os.path.join(dropins, n) for n in sorted(os.listdir(dropins)) if n.endswith(".yaml")]
    for path in paths:
        if os.path.exists(path):
            with open(path) as f:
                config.update(parse_config(f.read()))
    return config


def data_dir(config: dict) -> str:
    return str(config.get("data-dir") or "/var/lib/rancher/k3s")


def node_name(config: dict) -> str:
    # pkg/cli/cmds: the host name, lower-cased, unless node-name is set.
    return str(config.get("node-name") or socket.gethostname()).lower()


def node_ip(config: dict) -> str:
    if config.get("node-ip"):
        return str(config["node-ip"])
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    return "127.0.0.1"


# --- the kubelet's registration and the cloud provider ------------------------------------

# The taint a kubelet started with --cloud-provider=external registers its Node with
# (kubernetes pkg/kubelet/kubelet_node_status.go initialNode, TaintExternalCloudProvider); a
# cloud controller manager's node controller removes it once it has set the providerID and
# the zone labels (k8s.io/cloud-provider controllers/node/node_controller.go).
UNINITIALIZED_TAINT = {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}
# config.yaml keys whose values K3s's node-args annotation masks (pkg/nodeconfig:
# "********" for the token flags).
SECRET_ARGS = {"token", "agent-token", "etcd-s3-secret-key"}


def kubelet_args(config: dict) -> list[str]:
    value = config.get("kubelet-arg") or []
    return [str(v) for v in ([value] if isinstance(value, str) else value)]


def node_args(role: str, config: dict) -> list[str]:
    """The k3s.io/node-args annotation K3s puts on its Node at every start (pkg/nodeconfig
    SetNodeConfigAnnotations): the command and every flag it ran with, config.yaml's included,
    secret values masked."""
    args = [role]
    for key, value in sorted(config.items()):
        for item in value if isinstance(value, list) else [value]:
            shown = "********" if key in SECRET_ARGS else str(item).lower() if isinstance(item, bool) else str(item)
            args += [f"--{key}", shown]
    return args


def registration(role: str, config: dict, name: str) -> dict:
    """What the kubelet registers a NEW Node with: with cloud-provider=external, the
    uninitialized taint and no providerID (the cloud controller manager sets both); otherwise
    K3s's own cloud provider's `k3s://NAME` (pkg/cloudprovider)."""
    external = "cloud-provider=external" in kubelet_args(config)
    return {
        "nodeArgs": node_args(role, config),
        "taints": [UNINITIALIZED_TAINT] if external else [],
        "providerID": "" if external else f"k3s://{name}",
    }


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# pkg/clientaccess/token.go: `K10<ca hash>::<user>:<password>` (the secure form) or a bare
# password (the short form); a hash that is not 64 hex digits is refused.
SECURE_TOKEN = re.compile(r"^K10([^:]*)::(?:([^:]*):)?(.*)$")


def parse_token(token: str) -> tuple[str, str]:
    """(the CA hash the token pins, or "" for a short token; the password)."""
    match = SECURE_TOKEN.match(token)
    if not match:
        return "", token
    if not re.fullmatch(r"[0-9a-fA-F]{64}", match.group(1)):
        fatal(
            "failed to normalize server token; must be in format K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>: invalid token CA hash length"
        )
    return match.group(1).lower(), match.group(3)


def cluster_ca(url: str, token: str, seconds: float = 120) -> str:
    """pkg/clientaccess/token.go ParseAndValidateToken: the cluster CA from URL/cacerts, fetched
    without verification and then checked against the token's hash. A mismatch is an error,
    before any credential is sent; a short token only warns and trusts what answered. Retried
    while nothing answers (the agent and the join retry until their server is up)."""
    wanted, _ = parse_token(token)
    deadline = time.time() + seconds
    while True:
        answer = api_request(url, "/cacerts", "", timeout=5)
        if answer is not None and answer[0] == 200:
            break
        if time.time() > deadline:
            fatal(f"failed to get CA certs from {url}/cacerts: {answer[1] if answer else 'no answer'}")
        time.sleep(2)
    got = sha(answer[1])
    if wanted and got != wanted:
        fatal(
            f"failed to validate token: token CA hash does not match the Cluster CA certificate hash: {wanted} != {got}"
        )
    if not wanted:
        log(
            "Cluster CA certificate is not trusted by the host CA bundle, but the token does not include a CA hash. "
            "Use the full token from the server's node-token file to enable Cluster CA validation."
        )
    return answer[1]


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(crt: str, key: str) -> None:
    """A self-signed EC CA like the one K3s makes (k3s-server-ca@<time>); the lab uses it too,
    for the custom CA it gives a first server (tests/lab/driver.py) and for an impostor's."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "3650", "-subj", f"/CN=k3s-server-ca@{int(time.time())}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,digitalSignature",
            "-keyout", key, "-out", crt)  # fmt: skip


# --- etcd through its JSON gateway -------------------------------------------------------


class EtcdError(Exception):
    pass


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class Etcd:
    """A client over etcd's gRPC gateway (/v3/...), trying each endpoint in turn."""

    def __init__(self, endpoints: list[str], timeout: float = 3.0):
        self.endpoints = list(endpoints)
        self.timeout = timeout

    def call(self, path: str, body: dict) -> dict:
        last = "no endpoint"
        for endpoint in self.endpoints:
            request = urllib.request.Request(
                endpoint + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")
                try:
                    detail = json.loads(detail).get("message") or json.loads(detail).get("error") or detail
                except ValueError:
                    pass
                last = detail
                # A refusal is the cluster's answer (e.g. "too many learner members"); only
                # a learner's "not supported" is worth asking another member about.
                if "not supported for learner" not in detail:
                    raise EtcdError(detail) from None
            except (OSError, ValueError) as error:
                last = f"{endpoint}: {error}"
        raise EtcdError(last)

    def get(self, key: str) -> str | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, prefix: str) -> dict[str, str]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)}).get("kvs") or []
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in kvs}

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def create(self, key: str, value: str) -> bool:
        """Put only if absent; True when this call created it."""
        txn = {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
        }
        return bool(self.call("/v3/kv/txn", txn).get("succeeded"))

    def update(self, key: str, value: str) -> bool:
        """Put only if present; True when it was."""
        txn = {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "GREATER", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
        }
        return bool(self.call("/v3/kv/txn", txn).get("succeeded"))

    def swap(self, key: str, old: str | None, new: str) -> bool:
        """Put `new` only if the value is still `old` (None: only if absent); True when put."""
        if old is None:
            return self.create(key, new)
        txn = {
            "compare": [{"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(old)}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(new)}}],
        }
        return bool(self.call("/v3/kv/txn", txn).get("succeeded"))

    def delete_prefix(self, prefix: str) -> None:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self.call("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(end)})

    def members(self) -> list[dict]:
        return self.call("/v3/cluster/member/list", {}).get("members") or []

    def status(self) -> dict:
        return self.call("/v3/maintenance/status", {})


# --- the server ---------------------------------------------------------------------------


class Server:
    def __init__(self, config: dict):
        self.config = config
        self.name = node_name(config)
        self.ip = node_ip(config)
        self.join_token = str(config.get("token") or "")
        self.token = parse_token(self.join_token)[1]
        self.agent_token = parse_token(str(config.get("agent-token") or self.token))[1]
        self.join_url = str(config.get("server") or "").rstrip("/")
        self.join_ca: str | None = None
        self.data = data_dir(config)
        self.tls = os.path.join(self.data, "server", "tls")
        self.api: ApiServer | None = None
        self.db = os.path.join(self.data, "server", "db", "etcd")
        self.local = Etcd(["http://127.0.0.1:2379"])
        self.cluster = Etcd(["http://127.0.0.1:2379"])
        self.etcd_process: subprocess.Popen | None = None
        self.member_name = ""
        self.admin_token = ""
        self.stopping = threading.Event()
        self.removed = threading.Event()
        self.leading = False  # holds the k3s-etcd lease (member_controller)

    # pkg/etcd/etcd.go Register: a tombstone (written when etcd found this member removed, see
    # etcd_exited) moves the db aside (backupDirWithRetention: <db>-old-<unix time>), so this
    # start joins the cluster as a NEW member, under a new member name.
    def clear_tombstone(self) -> None:
        if not os.path.exists(os.path.join(self.db, "tombstone")):
            return
        log("tombstone file has been detected, removing data dir to rejoin the cluster")
        os.rename(self.db, f"{self.db}-old-{int(time.time())}")

    # pkg/etcd/etcd.go setName: the name file is written on every start, before any join.
    def set_name(self, force: bool = False) -> None:
        path = os.path.join(self.db, "name")
        os.makedirs(self.db, mode=0o700, exist_ok=True)
        if os.path.exists(path) and not force:
            with open(path) as f:
                self.member_name = f.read().strip()
            return
        self.member_name = f"{self.name}-{uuid.uuid4().hex[:8]}"
        with open(path, "w") as f:
            f.write(self.member_name)

    # pkg/etcd/etcd.go IsInitialized: only member/wal means etcd has data.
    def is_initialized(self) -> bool:
        return os.path.isdir(os.path.join(self.db, "member", "wal"))

    def peer_url(self) -> str:
        return f"http://{self.ip}:2380"

    def start_etcd(self, initial_cluster: str | None = None, state: str = "new") -> None:
        args = [
            "etcd",
            "--name",
            self.member_name,
            "--data-dir",
            self.db,
            "--listen-client-urls",
            f"http://{self.ip}:2379,http://127.0.0.1:2379",
            "--advertise-client-urls",
            f"http://{self.ip}:2379",
            "--listen-peer-urls",
            self.peer_url(),
            "--initial-advertise-peer-urls",
            self.peer_url(),
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]
        if initial_cluster:
            args += ["--initial-cluster", initial_cluster, "--initial-cluster-state", state]
        self.etcd_process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self.watch_etcd_log, args=(self.etcd_process,), daemon=True).start()
        log(f"started etcd {self.member_name} (state {state})")

    def watch_etcd_log(self, process: subprocess.Popen) -> None:
        """etcd's log, passed on; etcd says it was removed with rafthttp.ErrMemberRemoved's text
        ("server error" from etcdserver/server.go, then it exits 0), which is what K3s's
        embedded executor watches for (pkg/daemons/executor/embed.go ETCD, ErrNotify)."""
        for line in process.stderr:
            sys.stderr.write(line)
            if "the member has been permanently removed from the cluster" in line:
                self.removed.set()

    def etcd_exited(self) -> None:
        """pkg/daemons/executor/embed.go ETCD: on ErrMemberRemoved K3s writes <db>/tombstone,
        closes etcd and logs that a restart rejoins; it does NOT exit (the goroutine returns),
        so it runs on without etcd until something restarts it. Any other exit is fatal."""
        self.etcd_process.wait()
        if not self.removed.is_set():
            fatal(f"etcd exited with status {self.etcd_process.returncode}")
        with open(os.path.join(self.db, "tombstone"), "w"):
            pass
        log("This node has been removed from the cluster - please restart k3s to rejoin the cluster")
        self.stopping.wait()
        sys.exit(0)

    def wait_etcd_serving(self, seconds: float) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.etcd_process and self.etcd_process.poll() is not None:
                self.etcd_exited()
            try:
                self.local.status()
                return
            except EtcdError:
                time.sleep(0.3)
        fatal(f"etcd did not answer within {seconds:.0f}s")

    def join(self) -> None:
        # pkg/etcd/etcd.go join: members from the registration address's /db/info, then a
        # learner added through their client URLs; the token first checks who answers.
        self.join_ca = cluster_ca(self.join_url, self.join_token)
        info = api_request(self.join_url, "/db/info", self.token, timeout=10, ca=self.join_ca)
        if info is None or info[0] != 200:
            fatal(f"failed to get etcd members from {self.join_url}: {info[1] if info else 'no answer'}")
        members = json.loads(info[1]).get("members") or []
        client_urls = [u for m in members for u in m.get("clientURLs") or []]
        cluster = Etcd(client_urls, timeout=5)
        initial = []
        add = True
        for member in cluster.members():
            name = member.get("name", "")
            peers = member.get("peerURLs") or []
            if not name and self.peer_url() in peers:
                name = self.member_name
            if name == self.member_name and self.peer_url() in peers:
                add = False
            prefix = name[: name.rfind("-")] if name.rfind("-") > 1 else name
            if name != self.member_name and prefix == self.name:
                os.remove(os.path.join(self.db, "name"))
                fatal("ETCD join failed: duplicate node name found, please use a unique name for this node")
            if peers:
                initial.append(f"{name}={peers[0]}")
        if add:
            while True:
                try:
                    cluster.call("/v3/cluster/member/add", {"peerURLs": [self.peer_url()], "isLearner": True})
                    break
                except EtcdError as error:
                    # Current K3s retries, every second, a join that etcd refuses while another
                    # learner is joining or a voter is down (k3s-io/k3s#7351, pkg/etcd
                    # (*ETCD).Start): a blocked join waits out its caller's timeout.
                    if "too many learner members" not in str(error) and "unhealthy cluster" not in str(error):
                        fatal(f"ETCD join failed: {error}")
                    log(f"Waiting for other members to finish joining etcd cluster: {error}")
                    time.sleep(1)
            log(f"Adding member {self.member_name}={self.peer_url()} to etcd cluster {initial}")
            initial.append(f"{self.member_name}={self.peer_url()}")
        self.cluster = Etcd(["http://127.0.0.1:2379", *client_urls])
        self.start_etcd(",".join(initial), "existing")

    def run(self) -> None:
        if not self.join_token:
            fatal("--token is required")
        if not self.join_url and not self.config.get("cluster-init") and not self.is_initialized():
            fatal("stand-in k3s models embedded etcd only: set cluster-init or server")
        signal.signal(signal.SIGTERM, self.on_term)
        self.api = ApiServer(self, self.tls)
        threading.Thread(target=self.api.serve, daemon=True).start()  # /ping answers from here on
        self.clear_tombstone()
        self.set_name()
        if self.is_initialized():
            self.start_etcd()
        elif self.join_url:
            self.join()
        else:
            self.start_etcd(f"{self.member_name}={self.peer_url()}", "new")
        self.wait_etcd_serving(120)
        if self.config.get("cluster-init") and not self.join_url:
            # Like the cluster CA in K3s's bootstrap data: made once, shared by every server.
            self.cluster.create(PREFIX + "admin-credential", secrets.token_hex(24))
            self.cluster.create(PREFIX + "bootstrap/critical", json.dumps(self.critical()))
            self.cluster.create(PREFIX + "bootstrap/server-ca", json.dumps(self.own_or_new_ca()))
        self.refresh_cluster_endpoints()
        self.admin_token = self.wait_admin_credential()
        self.check_critical()
        self.install_ca()
        write_kubeconfig(self.admin_token, str(self.config.get("write-kubeconfig-mode") or "0600"))
        check_node_password(self.cluster, self.name, role="server")
        threading.Thread(target=self.kubelet, daemon=True).start()
        threading.Thread(target=self.manage, daemon=True).start()
        threading.Thread(target=self.member_controller, daemon=True).start()
        threading.Thread(target=self.deploy_controller, daemon=True).start()
        threading.Thread(target=self.cloud_controller, daemon=True).start()
        notify_ready()
        log("k3s is up and running")
        while not self.stopping.is_set():
            if self.etcd_process and self.etcd_process.poll() is not None:
                self.etcd_exited()
            time.sleep(0.5)

    def critical(self) -> dict:
        """pkg/daemons/config CriticalControlArgs, the one k3s-ha sets: secrets-encryption."""
        return {"secrets-encryption": bool(self.config.get("secrets-encryption") in (True, "true"))}

    def check_critical(self) -> None:
        """pkg/cluster/bootstrap.go: a server whose critical configuration differs from the
        cluster's is refused at start."""
        stored = self.cluster.get(PREFIX + "bootstrap/critical")
        if stored is None:  # a cluster made before the stand-in kept it
            self.cluster.create(PREFIX + "bootstrap/critical", json.dumps(self.critical()))
            return
        for key, value in json.loads(stored).items():
            if self.critical().get(key) != value:
                log(f"critical configuration mismatched: {key}")
                fatal("failed to validate server configuration: critical configuration value mismatch between servers")

    def own_or_new_ca(self) -> dict:
        """pkg/daemons/control/deps/deps.go createSigningCertKey: a CA already in server/tls
        (custom CA certificates) is used as it is; otherwise one is made."""
        crt, key = os.path.join(self.tls, "server-ca.crt"), os.path.join(self.tls, "server-ca.key")
        if not (os.path.exists(crt) and os.path.exists(key)):
            os.makedirs(self.tls, mode=0o700, exist_ok=True)
            make_ca(crt, key)
        with open(crt) as c, open(key) as k:
            return {"crt": c.read(), "key": k.read()}

    def install_ca(self) -> None:
        """The cluster CA from the bootstrap data onto this server's disk (pkg/cluster
        ReconcileBootstrapData), a serving certificate signed by it, and the token files
        (pkg/server/server.go writeToken: K10<hash of server-ca.crt>::server:<password>)."""
        deadline = time.time() + 60
        while (stored := self.cluster.get(PREFIX + "bootstrap/server-ca")) is None:
            if time.time() > deadline:
                fatal("the cluster's bootstrap data holds no server CA")
            time.sleep(1)
        ca = json.loads(stored)
        os.makedirs(self.tls, mode=0o700, exist_ok=True)
        for name, text in (("server-ca.crt", ca["crt"]), ("server-ca.key", ca["key"])):
            with open(os.path.join(self.tls, name), "w") as f:
                f.write(text)
        serving = os.path.join(self.tls, "serving-kube-apiserver")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=kube-apiserver", "-keyout", f"{serving}.key", "-out", f"{serving}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", f"{serving}.csr", "-CA", os.path.join(self.tls, "server-ca.crt"),
                "-CAkey", os.path.join(self.tls, "server-ca.key"), "-set_serial", str(secrets.randbits(63)),
                "-days", "365", "-out", f"{serving}.crt")  # fmt: skip
        self.api.use_certificate(f"{serving}.crt", f"{serving}.key")
        digest = sha(ca["crt"])
        server_dir = os.path.join(self.data, "server")
        for name, user, password in (("token", "server", self.token), ("agent-token", "node", self.agent_token)):
            path = os.path.join(server_dir, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(f"K10{digest}::{user}:{password}\n")

    def wait_admin_credential(self) -> str:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                value = self.cluster.get(PREFIX + "admin-credential")
                if value:
                    return value
            except EtcdError as error:
                log(f"waiting for the cluster's admin credential: {error}")
            time.sleep(1)
        fatal("the cluster has no admin credential")
        return ""

    def on_term(self, *_):
        self.stopping.set()
        if self.leading:  # wrangler pkg/leader ReleaseOnCancel: a clean stop hands the lease on
            try:
                self.local.put(PREFIX + "leases/k3s-etcd", json.dumps({"holder": "", "renewed": 0}))
            except EtcdError:
                pass
        if self.etcd_process and self.etcd_process.poll() is None:
            self.etcd_process.terminate()
            try:
                self.etcd_process.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd_process.kill()
        sys.exit(0)

    def set_voter_condition(self, name: str, status: str) -> None:
        """pkg/etcd/etcd.go setEtcdStatusCondition: a changed status is written at once (new
        transition time); an unchanged one only gets a new heartbeat every 5 minutes."""
        key = PREFIX + f"node-status/{name}/EtcdIsVoter"
        old = json.loads(self.local.get(key) or "{}")
        now = time.time()
        if old.get("status") == status and now - old.get("heartbeat", 0) < 300:
            return
        transition = old["transition"] if old.get("status") == status else now
        self.local.put(key, json.dumps({"status": status, "heartbeat": now, "transition": transition}))

    def refresh_cluster_endpoints(self) -> None:
        try:
            urls = [u for m in self.local.members() for u in m.get("clientURLs") or []]
        except EtcdError:
            return
        self.cluster = Etcd(["http://127.0.0.1:2379", *[u for u in urls if self.ip not in u]])

    def kubelet(self) -> None:
        """Registers the Node once per start, then only updates its status: a deleted Node
        stays deleted until the next start (k3s-io/k3s#5404)."""
        record = {
            "name": self.name,
            "roles": ["control-plane", "etcd", "master"],
            "internalIP": self.ip,
            "since": time.time(),
            **registration("server", self.config, self.name),
        }
        key = PREFIX + f"nodes/{self.name}"
        registered = False
        while True:
            try:
                value = json.dumps(keep_created(self.cluster, key, {**record, **heartbeat()}))
                if not registered:
                    self.cluster.put(key, value)
                    registered = True
                elif not self.cluster.update(key, value):
                    log(f'Error updating node status: nodes "{self.name}" not found')
            except EtcdError as error:
                log(f"failed to post node status: {error}")
            time.sleep(HEARTBEAT_SECONDS)

    def manage(self) -> None:
        """pkg/etcd/etcd.go manageLearners and the EtcdIsVoter condition, on the leader only."""
        while True:
            time.sleep(MANAGE_TICKER_SECONDS)
            try:
                status = self.local.status()
                if status.get("leader") != status.get("header", {}).get("member_id"):
                    continue
                members = self.local.members()
                for member in members:
                    if member.get("isLearner"):
                        try:
                            self.local.call("/v3/cluster/member/promote", {"ID": member["ID"]})
                            member["isLearner"] = False
                            log(f"Promoted learner {member.get('name')}")
                        except EtcdError as error:
                            log(f"learner {member.get('name')} not promoted yet: {error}")
                voters = {
                    m.get("name", "").rsplit("-", 1)[0] for m in members if m.get("name") and not m.get("isLearner")
                }
                for value in self.local.get_prefix(PREFIX + "nodes/").values():
                    node = json.loads(value)
                    if "etcd" in node.get("roles", []):
                        self.set_voter_condition(node["name"], "True" if node["name"] in voters else "False")
                self.refresh_cluster_endpoints()
            except EtcdError as error:
                log(f"etcd member management: {error}")

    def member_controller(self) -> None:
        """pkg/etcd/etcd.go Register: the member controller (the etcd finalizer of server Nodes)
        is a LeaderElectedClusterController, run only by the holder of the k3s-etcd lease. A
        holder that dies keeps it until it expires, so finalizers wait up to 45 s (one that is
        stopped releases it: ReleaseOnCancel); a holder whose apiserver cannot renew it (its
        own etcd stopped: the apiserver's only endpoint is the local one) exits after 30 s,
        and systemd restarts it (Restart=always)."""
        key = PREFIX + "leases/k3s-etcd"
        renewed = 0.0
        while not self.stopping.is_set():
            try:
                current = self.local.get(key)
                lease = json.loads(current) if current else None
                now = time.time()
                if lease is None or lease["holder"] == self.name or now - lease["renewed"] > LEASE_SECONDS:
                    if self.local.swap(key, current, json.dumps({"holder": self.name, "renewed": now})):
                        if not self.leading:
                            log("successfully acquired lease kube-system/k3s-etcd")
                        self.leading, renewed = True, now
            except (EtcdError, KeyError, ValueError) as error:
                log(f"error retrieving resource lock kube-system/k3s-etcd: {error}")
            if self.leading and time.time() - renewed > RENEW_DEADLINE_SECONDS:
                fatal("leaderelection lost for k3s-etcd")
            if self.leading:
                try:
                    self.finalize_deleted_servers(self.local.members())
                except EtcdError as error:
                    log(f"etcd member controller: {error}")
            time.sleep(LEASE_RETRY_SECONDS)

    def deploy_controller(self) -> None:
        """pkg/deploy/controller.go: every server applies each *.yaml in DATA/server/manifests
        at start and again when its content changes (it rescans every DEPLOY_RESCAN_SECONDS),
        recording an AddOn per file with the content's checksum; a document it cannot apply
        is logged and skipped. Removing a file deletes nothing. Here the objects go to etcd,
        and each server's applied checksum is recorded under addons/<server>/<file>, so the
        lab can tell what every server received."""
        folder = os.path.join(self.data, "server", "manifests")
        applied: dict[str, str] = {}
        while not self.stopping.is_set():
            for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                if not file.endswith((".yaml", ".yml", ".json")):
                    continue
                path = os.path.join(folder, file)
                try:
                    with open(path) as f:
                        text = f.read()
                except OSError:
                    continue
                checksum = sha(text)
                if applied.get(file) != checksum:
                    try:
                        self.apply_manifest(file, text, checksum)
                        applied[file] = checksum
                    except EtcdError as error:
                        log(f"failed to apply {path}: {error}")
            self.stopping.wait(DEPLOY_RESCAN_SECONDS)

    def apply_manifest(self, file: str, text: str, checksum: str) -> None:
        import yaml  # python3-yaml on the lab hosts (tests/run.sh)

        objects = []
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as error:
            log(f"failed to parse {file}: {error}")
            return
        for doc in documents:
            meta = doc.get("metadata") or {}
            if not (doc.get("apiVersion") and doc.get("kind") and meta.get("name")):
                log(f"{file}: skipping an object without apiVersion, kind or metadata.name")
                continue
            ref = f"{doc['kind']}/{meta.get('namespace', '')}/{meta['name']}"
            self.cluster.put(PREFIX + f"objects/{ref}", json.dumps(doc))
            objects.append(ref)
        stem = file.rsplit(".", 1)[0]
        record = {"checksum": checksum, "objects": objects, "applied": time.time()}
        self.cluster.put(PREFIX + f"addons/{self.name}/{stem}", json.dumps(record))
        log(f"applied {file} ({len(objects)} objects)")

    def cloud_controller(self) -> None:
        """The AWS cloud controller manager, as K3s's helm controller would run it from a
        HelmChart whose chart is aws-cloud-controller-manager: its install job runs
        HELM_INSTALL_SECONDS after the chart appears, and only if it may run on a Node that
        still carries the uninitialized taint, which every Node does until the CCM runs
        (helm-controller: a chart with `bootstrap: true` runs its job on the host network and
        tolerates that taint). The CCM's pods then schedule only onto a Node matching the
        chart's nodeSelector (its default, node-role.kubernetes.io/control-plane: "", matches no
        K3s server: K3s labels them "true"). Running, it initialises every tainted Node on its
        next pass (CLOUD_SYNC_SECONDS): providerID aws:///ZONE/INSTANCE and the zone labels,
        taint removed. The lab's zone and instance ids are made up."""
        seen = 0.0
        while not self.stopping.wait(CLOUD_SYNC_SECONDS):
            if not self.leading:
                continue
            try:
                chart = self.ccm_chart()
                if chart is None:
                    continue
                seen = seen or time.time()
                if time.time() - seen < HELM_INSTALL_SECONDS:
                    continue
                if not chart.get("spec", {}).get("bootstrap"):
                    log(
                        "helm-install-aws-cloud-controller-manager: pod unschedulable: untolerated taint node.cloudprovider.kubernetes.io/uninitialized"
                    )
                    continue
                self.initialise_nodes(chart)
            except (EtcdError, ValueError, KeyError) as error:
                log(f"cloud controller: {error}")

    def ccm_chart(self) -> dict | None:
        for value in self.cluster.get_prefix(PREFIX + "objects/HelmChart/").values():
            chart = json.loads(value)
            if chart.get("spec", {}).get("chart") == "aws-cloud-controller-manager":
                return chart
        return None

    def initialise_nodes(self, chart: dict) -> None:
        import yaml

        values = yaml.safe_load(chart["spec"].get("valuesContent") or "") or {}
        selector = values.get("nodeSelector", {"node-role.kubernetes.io/control-plane": ""})
        nodes = [json.loads(v) for v in self.cluster.get_prefix(PREFIX + "nodes/").values()]
        statuses = self.cluster.get_prefix(PREFIX + "node-status/")
        hosts = [
            n for n in nodes if selector.items() <= node_object(n, {}).get("metadata", {}).get("labels", {}).items()
        ]
        if not hosts:
            log(f"aws-cloud-controller-manager: 0/{len(nodes)} nodes match the pod's node affinity/selector {selector}")
            return
        for node in nodes:
            tainted = any(t["key"] == UNINITIALIZED_TAINT["key"] for t in node.get("taints", []))
            if not tainted or PREFIX + f"node-status/{node['name']}/cloud" in statuses:
                continue
            instance = "i-" + sha(node["name"])[:17]
            cloud = {"providerID": f"aws:///lab-zone-a/{instance}",
                     "labels": {"topology.kubernetes.io/zone": "lab-zone-a", "topology.kubernetes.io/region": "lab"}}  # fmt: skip
            self.cluster.put(PREFIX + f"node-status/{node['name']}/cloud", json.dumps(cloud))
            log(f"Successfully initialized node {node['name']} with cloud provider")

    def finalize_deleted_servers(self, members: list[dict]) -> None:
        """The etcd finalizer of deleted server Nodes, by the lease holder: remove the member,
        then the Node. etcd refuses to remove a started member when the started ones left would
        be below quorum (mayRemoveMember, server/etcdserver/server.go); the Node then stays
        Terminating and the next tick tries again (issue 17.3)."""
        statuses = self.local.get_prefix(PREFIX + "node-status/")
        for key in statuses:
            if not key.endswith("/deletionTimestamp"):
                continue
            name = key[len(PREFIX + "node-status/") : -len("/deletionTimestamp")]
            try:
                for member in members:
                    member_name = member.get("name", "")
                    if member_name[: member_name.rfind("-")] == name:
                        self.local.call("/v3/cluster/member/remove", {"ID": member["ID"]})
                        log(f"Removed etcd member {member_name} of deleted node {name}")
            except EtcdError as error:
                log(f"failed to remove etcd member of deleted node {name}, will retry: {error}")
                continue
            forget_node(self.local, name)


def boot_id() -> str:
    """The kernel's boot id, which the real kubelet reports as status.nodeInfo.bootID
    (kubernetes pkg/kubelet/nodestatus/setters.go MachineInfo); each lab host has its own."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def forget_node(store, name: str) -> None:
    """The Node object and what hangs off it are gone (the node-password secret through its
    OwnerReference)."""
    store.delete_prefix(PREFIX + f"nodes/{name}")
    store.delete_prefix(PREFIX + f"node-status/{name}/")
    store.delete_prefix(PREFIX + f"node-passwords/{name}")


def keep_created(cluster, key: str, record: dict) -> dict:
    """The record with the Node's creation time: kept from the stored Node (a kubelet that
    registers again, or posts its status, does not change metadata.creationTimestamp), now
    for a new one."""
    try:
        stored = cluster.get(key)
    except EtcdError:
        stored = None
    old = json.loads(stored) if stored else {}
    # A kubelet that registers an existing Node again does not taint it again, and a Node's
    # providerID cannot change once set (kubernetes pkg/kubelet/kubelet_node_status.go
    # tryRegisterWithAPIServer updates an existing Node's labels, not its taints).
    kept = {k: old[k] for k in ("taints", "providerID") if k in old}
    return {**record, **kept, "created": old.get("created") or time.time()}


def heartbeat() -> dict:
    return {"heartbeat": time.time(), "kubeletVersion": VERSION, "bootID": boot_id()}


def local_node_password() -> str:
    """The host's node password (/etc/rancher/node/password), made on its first start."""
    os.makedirs(os.path.dirname(NODE_PASSWORD_FILE), exist_ok=True)
    if not os.path.exists(NODE_PASSWORD_FILE):
        with open(os.open(NODE_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(secrets.token_hex(16))
    with open(NODE_PASSWORD_FILE) as f:
        return f.read().strip()


def check_node_password(store: Etcd, name: str, role: str) -> None:
    """pkg/nodepassword: a host keeps a random password; the cluster stores its hash under
    the node's name, and refuses another machine that registers under that name."""
    password = local_node_password()
    key = PREFIX + f"node-passwords/{name}"
    if not store.create(key, sha(password)) and store.get(key) != sha(password):
        fatal(f"Node password rejected, duplicate hostname or contents of '{NODE_PASSWORD_FILE}' may not match")


def notify_ready() -> None:
    """systemd Type=notify: the stand-in systemctl waits for this file."""
    path = os.environ.get("K3S_STANDIN_NOTIFY")
    if path:
        with open(path, "w") as f:
            f.write(str(os.getpid()))


def write_kubeconfig(token: str, mode: str, path: str = KUBECONFIG, server: str = "https://127.0.0.1:6443") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = (
        "apiVersion: v1\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n"
        f"    server: {server}\n  name: default\ncontexts:\n- context:\n"
        "    cluster: default\n    user: default\n  name: default\ncurrent-context: default\n"
        f"kind: Config\nusers:\n- name: default\n  user:\n    token: {token}\n"
    )
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(mode, 8)), "w") as f:
        f.write(text)
    os.chmod(tmp, int(mode, 8))
    os.replace(tmp, path)


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def node_object(record: dict, statuses: dict[str, str]) -> dict:
    heartbeat = float(record.get("heartbeat", 0))
    fresh = time.time() - heartbeat < NODE_MONITOR_GRACE_SECONDS
    # Ready: the kubelet's own status (lastHeartbeatTime its last post, transition when this
    # run of it registered); the node lifecycle controller turns it Unknown after the grace.
    ready = {"type": "Ready", "status": "True", "lastHeartbeatTime": rfc3339(heartbeat),
             "lastTransitionTime": rfc3339(float(record.get("since", heartbeat)))}  # fmt: skip
    if not fresh:
        ready.update(status="Unknown", lastTransitionTime=rfc3339(heartbeat + NODE_MONITOR_GRACE_SECONDS))
    conditions = [ready]
    if "EtcdIsVoter" in statuses:
        voter = json.loads(statuses["EtcdIsVoter"])
        conditions.append({"type": "EtcdIsVoter", "status": voter["status"],
                           "lastHeartbeatTime": rfc3339(voter["heartbeat"]),
                           "lastTransitionTime": rfc3339(voter["transition"])})  # fmt: skip
    labels = {f"node-role.kubernetes.io/{r}": "true" for r in record.get("roles", [])}
    cloud = json.loads(statuses.get("cloud", "{}"))  # what the cloud controller manager set
    labels.update(cloud.get("labels", {}))
    labels.update(json.loads(statuses.get("labels", "{}")))
    taints = [t for t in record.get("taints", []) if not (cloud and t["key"] == UNINITIALIZED_TAINT["key"])]
    annotations = {"k3s.io/node-args": json.dumps(record.get("nodeArgs", []))}
    annotations.update(json.loads(statuses.get("annotations", "{}")))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": record["name"],
            "creationTimestamp": rfc3339(float(record.get("created", record.get("since", 0)))),
            **({"deletionTimestamp": statuses["deletionTimestamp"]} if "deletionTimestamp" in statuses else {}),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "unschedulable": statuses.get("unschedulable") == "true",
            "providerID": record.get("providerID") or cloud.get("providerID", ""),
            **({"taints": taints} if taints else {}),
        },
        "status": {
            "conditions": conditions,
            "nodeInfo": {"kubeletVersion": record.get("kubeletVersion", ""), "bootID": record.get("bootID", "")},
            "addresses": [{"type": "InternalIP", "address": record.get("internalIP", "")}],
        },
    }


class ApiServer:
    """The supervisor and a sliver of the apiserver on :6443."""

    def __init__(self, server: Server, tls_dir: str):
        self.server = server
        os.makedirs(tls_dir, exist_ok=True)
        self.cert = os.path.join(tls_dir, "standin-serving.crt")
        self.key = os.path.join(tls_dir, "standin-serving.key")
        if not os.path.exists(self.key):
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-days", "30", "-subj", f"/CN={server.name}", "-keyout", self.key, "-out", self.cert],
                check=True, capture_output=True,
            )  # fmt: skip

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, self.key)

    def use_certificate(self, cert: str, key: str) -> None:
        """New connections get this certificate (one signed by the cluster CA)."""
        self.context.load_cert_chain(cert, key)

    def serve(self) -> None:
        server = self.server
        context = self.context

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body, content_type: str = "application/json"):
                data = body if isinstance(body, str) else json.dumps(body)
                raw = data.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def bearer(self) -> str:
                return self.headers.get("Authorization", "").removeprefix("Bearer ")

            def body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self):
                self.route("GET")

            def do_POST(self):
                self.route("POST")

            def do_DELETE(self):
                self.route("DELETE")

            def do_PATCH(self):
                self.route("PATCH")

            def do_PUT(self):
                self.route("PUT")

            def route(self, method: str):
                path = self.path.split("?")[0]
                if path == "/ping":  # unauthenticated, answered before etcd is up
                    return self.reply(200, "pong", "text/plain")
                if path == "/cacerts":  # unauthenticated: pkg/server/router.go cacerts
                    try:
                        with open(os.path.join(server.tls, "server-ca.crt")) as f:
                            return self.reply(200, f.read(), "text/plain")
                    except FileNotFoundError:
                        return self.reply(503, "no cluster CA yet", "text/plain")
                token = self.bearer()
                is_server = token == server.token
                if not token or token not in (server.token, server.agent_token, server.admin_token):
                    return self.reply(401, {"message": "Unauthorized"})
                if token not in (server.token, server.admin_token) and not node_may(method, path):
                    # The agent token is a kubelet's identity (system:node:<name>). Kubernetes'
                    # Node authorizer lets a node read Nodes and the ConfigMaps and Secrets its
                    # own pods use, and write only Nodes and their status (kubernetes.io docs,
                    # "Using Node Authorization"; NodeRestriction narrows writes to its own Node,
                    # which this stand-in, with one token for every agent, cannot tell apart).
                    return self.reply(
                        403, {"message": f'forbidden: User "system:node" cannot {method} {path}', "reason": "Forbidden"}
                    )
                try:
                    self.dispatch(method, path, is_server)
                except EtcdError as error:
                    self.reply(500, {"message": f"etcdserver: {error}"})

            def dispatch(self, method: str, path: str, is_server: bool):
                if path == "/readyz":
                    try:
                        server.local.get(PREFIX + "readyz")  # linearizable: a learner refuses it
                    except EtcdError:
                        return self.reply(500, "[-]etcd failed: reason withheld\nreadyz check failed", "text/plain")
                    return self.reply(200, "ok", "text/plain")
                if path == "/db/info" and is_server:
                    members = server.local.members()
                    return self.reply(200, {"members": members})
                if path == "/v1-standin/servers":
                    nodes = [json.loads(v) for v in server.cluster.get_prefix(PREFIX + "nodes/").values()]
                    fresh = [n["internalIP"] for n in nodes if "etcd" in n.get("roles", [])]
                    return self.reply(200, {"servers": fresh})
                match = re.match(r"^/v1-standin/nodes/([a-z0-9.-]+)/status$", path)
                if match and method == "POST":
                    name = match.group(1)
                    body = self.body()
                    key = PREFIX + f"node-passwords/{name}"
                    wanted = sha(body.get("password", ""))
                    if not server.cluster.create(key, wanted) and server.cluster.get(key) != wanted:
                        return self.reply(403, {"message": "Node password rejected"})
                    record = {"name": name, "roles": [], "internalIP": body.get("internalIP", ""), **heartbeat()}
                    record["since"] = body.get("since", record["heartbeat"])
                    record["kubeletVersion"] = body.get("kubeletVersion", "")
                    record["bootID"] = body.get("bootID", "")
                    record.update({k: body[k] for k in ("nodeArgs", "taints", "providerID") if k in body})
                    record = keep_created(server.cluster, PREFIX + f"nodes/{name}", record)
                    if body.get("register"):
                        server.cluster.put(PREFIX + f"nodes/{name}", json.dumps(record))
                    elif not server.cluster.update(PREFIX + f"nodes/{name}", json.dumps(record)):
                        return self.reply(404, {"message": f'nodes "{name}" not found', "reason": "NotFound"})
                    return self.reply(200, {})
                match = re.match(r"^/v1-standin/node-passwords/([a-z0-9.-]+)$", path)
                if match and method == "DELETE":
                    key = PREFIX + f"node-passwords/{match.group(1)}"
                    if server.cluster.get(key) is None:
                        return self.reply(404, {"message": "not found", "reason": "NotFound"})
                    server.cluster.delete_prefix(key)
                    return self.reply(200, {})
                match = re.match(r"^/api/v1/namespaces/kube-system/configmaps/([a-z0-9.-]+)$", path)
                if match:
                    # ConfigMaps in kube-system (the member record): GET, and PUT as
                    # `kubectl apply` creates or replaces one; kept in etcd like the Nodes.
                    key = PREFIX + f"configmaps/kube-system/{match.group(1)}"
                    if method == "PUT":
                        server.cluster.put(key, json.dumps(self.body()))
                        return self.reply(200, json.loads(server.cluster.get(key)))
                    found = server.cluster.get(key)
                    if found is None:
                        return self.reply(
                            404, {"message": f'configmaps "{match.group(1)}" not found', "reason": "NotFound"}
                        )
                    return self.reply(200, json.loads(found))
                if path == "/api/v1/nodes" and method == "GET":
                    return self.reply(200, {"kind": "NodeList", "items": self.nodes()})
                if path == "/api/v1/pods" and method == "GET":
                    # Only `--field-selector spec.nodeName=NODE`, what kubectl drain lists.
                    node = self.path.split("spec.nodeName%3D", 1)[-1].split("spec.nodeName=", 1)[-1].split("&")[0]
                    pods = server.cluster.get_prefix(PREFIX + f"pods/{node}/")
                    return self.reply(200, {"kind": "PodList", "items": [json.loads(v) for v in pods.values()]})
                match = re.match(r"^/api/v1/namespaces/([a-z0-9-]+)/pods/([a-z0-9.-]+)/eviction$", path)
                if match and method == "POST":
                    return self.evict(*match.groups())
                match = re.match(r"^/api/v1/nodes/([a-z0-9.-]+)$", path)
                if match:
                    return self.node(method, match.group(1))
                return self.reply(404, {"message": "the server could not find the requested resource"})

            def evict(self, namespace: str, name: str):
                """The Eviction API: a pod a PodDisruptionBudget protects is refused with 429
                (pkg/registry/core/pod/storage/eviction.go); the lab's pods name the budget
                that blocks them, and nothing else (no pod the lab makes may be evicted)."""
                for key, value in server.cluster.get_prefix(PREFIX + "pods/").items():
                    pod = json.loads(value)
                    if (pod.get("namespace"), pod.get("name")) != (namespace, name):
                        continue
                    if pod.get("disruptionBudget"):
                        return self.reply(
                            429,
                            {
                                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                                "reason": "TooManyRequests",
                            },
                        )
                    server.cluster.delete_prefix(key)
                    return self.reply(201, {"kind": "Status", "status": "Success"})
                return self.reply(404, {"message": f'pods "{name}" not found', "reason": "NotFound"})

            def nodes(self, only: str | None = None) -> list[dict]:
                store = server.cluster
                records = store.get_prefix(PREFIX + "nodes/")
                statuses = store.get_prefix(PREFIX + "node-status/")
                items = []
                for value in records.values():
                    record = json.loads(value)
                    if only and record["name"] != only:
                        continue
                    mine = {
                        k.rsplit("/", 1)[1]: v
                        for k, v in statuses.items()
                        if k.startswith(PREFIX + f"node-status/{record['name']}/")
                    }
                    items.append(node_object(record, mine))
                return sorted(items, key=lambda n: n["metadata"]["name"])

            def node(self, method: str, name: str):
                found = self.nodes(name)
                if not found:
                    return self.reply(404, {"message": f'nodes "{name}" not found', "reason": "NotFound"})
                if method == "GET":
                    return self.reply(200, found[0])
                if method == "PATCH":
                    body = self.body()
                    if "unschedulable" in body.get("spec", {}):
                        value = "true" if body["spec"]["unschedulable"] else "false"
                        server.cluster.put(PREFIX + f"node-status/{name}/unschedulable", value)
                    # A JSON merge patch (RFC 7386), as `kubectl patch --type=merge` sends: a null
                    # value removes the key.
                    for part in ("labels", "annotations"):
                        change = body.get("metadata", {}).get(part)
                        if change:
                            key = PREFIX + f"node-status/{name}/{part}"
                            current = json.loads(server.cluster.get(key) or "{}")
                            current.update(change)
                            current = {k: v for k, v in current.items() if v is not None}
                            server.cluster.put(key, json.dumps(current))
                    return self.reply(200, self.nodes(name)[0])
                if method == "DELETE":
                    if found[0]["metadata"]["labels"].get("node-role.kubernetes.io/etcd") == "true":
                        # A server's Node carries K3s's etcd finalizer: the API call only marks it
                        # for deletion; the member controller, on the leader, removes the etcd
                        # member and then the Node (pkg/etcd/member_controller.go onRemove), and
                        # retries while etcd refuses (manage(), finalize_deleted_servers).
                        server.cluster.put(PREFIX + f"node-status/{name}/deletionTimestamp", rfc3339(time.time()))
                        return self.reply(200, {"kind": "Status", "status": "Success"})
                    forget_node(server.cluster, name)
                    return self.reply(200, {"kind": "Status", "status": "Success"})
                return self.reply(405, {"message": "method not allowed"})

        httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), Handler)
        httpd.daemon_threads = True
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        httpd.serve_forever()


def node_may(method: str, path: str) -> bool:
    """What a kubelet's credentials may do here (see route): register and report its Node, read
    Nodes and the server list, patch a Node; never a ConfigMap, a node password or a delete."""
    if method == "POST":
        return re.match(r"^/v1-standin/nodes/[a-z0-9.-]+/status$", path) is not None
    if method == "GET":
        return path in ("/readyz", "/v1-standin/servers", "/api/v1/nodes") or path.startswith("/api/v1/nodes/")
    return method == "PATCH" and path.startswith("/api/v1/nodes/")


def api_request(
    base: str,
    path: str,
    token: str,
    method: str = "GET",
    body: dict | None = None,
    timeout: float = 10,
    ca: str | None = None,
):
    """(status, text) from a k3s API, or None when nothing answers (or, with `ca`, when what
    answers does not present a certificate signed by that CA)."""
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    context.check_hostname = False
    if not ca:
        context.verify_mode = ssl.CERT_NONE
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, ValueError):
        return None


# --- the agent ----------------------------------------------------------------------------


def agent() -> None:
    config = load_config()
    url = str(config.get("server") or "").rstrip("/")
    full_token = str(config.get("token") or "")
    if not url or not full_token:
        fatal("--server (K3S_URL) and --token are required")
    # pkg/agent/config: the token is validated against the registration address's CA first.
    ca = cluster_ca(url, full_token, seconds=3600)
    token = parse_token(full_token)[1]
    name = node_name(config)
    ip = node_ip(config)
    password = local_node_password()
    # pkg/agent/loadbalancer: the registration address first, then every server it lists.
    endpoints = [url]
    started = time.time()
    ready = False
    last_refresh = 0.0
    while True:
        for base in list(endpoints):
            answer = api_request(
                base,
                f"/v1-standin/nodes/{name}/status",
                token,
                "POST",
                {
                    "password": password,
                    "internalIP": ip,
                    "kubeletVersion": VERSION,
                    "bootID": boot_id(),
                    "register": not ready,
                    "since": started,
                    **registration("agent", config, name),
                },  # fmt: skip
                timeout=5,
                ca=ca,
            )
            if answer is None or answer[0] >= 500:
                continue
            if answer[0] == 404 and ready:
                log(f'Error updating node status: nodes "{name}" not found')
                break
            if answer[0] != 200:
                if not ready:
                    fatal(f"failed to register node {name} with {base}: {answer[1]}")
                log(f"node status refused by {base}: {answer[1]}")
                break
            if not ready:
                ready = True
                # pkg/agent/config: the kubelet's own kubeconfig, with which the node reads Nodes.
                write_kubeconfig(token, "0600", os.path.join(data_dir(config), "agent", "kubelet.kubeconfig"), base)
                notify_ready()
                log(f"agent {name} registered through {base}")
            if time.time() - last_refresh > 10:
                listed = api_request(base, "/v1-standin/servers", token, timeout=5, ca=ca)
                if listed and listed[0] == 200:
                    servers = [f"https://{a}:6443" for a in json.loads(listed[1]).get("servers", [])]
                    endpoints = [base, *[s for s in servers if s != base], *([url] if url not in servers else [])]
                    last_refresh = time.time()
            break
        time.sleep(HEARTBEAT_SECONDS)


# --- kubectl ------------------------------------------------------------------------------


def _path_parts(path: str) -> list[str]:
    """`.a.b\\.c[*][?(@.t=="x")]` -> ['a', 'b.c', '[*]', '[?(@.t=="x")]']."""
    parts, i = [], 0
    while i < len(path):
        if path[i] == ".":
            i += 1
            name = ""
            while i < len(path) and path[i] not in ".[":
                if path[i] == "\\" and i + 1 < len(path):
                    i += 1
                name += path[i]
                i += 1
            if name:
                parts.append(name)
        elif path[i] == "[":
            close = path.index("]", i)
            parts.append(path[i : close + 1])
            i = close + 1
        else:
            raise ValueError(f"unsupported JSONPath {path!r}")
    return parts


def _evaluate(path: str, context) -> list:
    values = [context]
    for part in _path_parts(path):
        found = []
        for value in values:
            if part == "[*]":
                found += value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
            elif part.startswith("[?("):
                match = re.fullmatch(r'\[\?\(@\.(\w+)==["\'](.*)["\']\)\]', part)
                if not match:
                    raise ValueError(f"unsupported JSONPath filter {part!r}")
                found += [v for v in value if isinstance(v, dict) and str(v.get(match.group(1))) == match.group(2)]
            elif part.startswith("["):
                index = int(part[1:-1])
                if isinstance(value, list) and -len(value) <= index < len(value):
                    found.append(value[index])
            elif isinstance(value, dict) and part in value:
                found.append(value[part])
        values = found
    return values


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def jsonpath(template: str, obj) -> str:
    """kubectl's -o jsonpath for what the node scripts use: paths with [*], [N] and
    [?(@.key=="value")] filters, quoted literals and {range}...{end}; a missing key prints
    nothing (kubectl's --allow-missing-template-keys=true)."""
    tokens = re.findall(r'\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}|([^{}]+)', template)
    out: list[str] = []

    def block_end(i: int) -> int:
        depth = 0
        while i < len(tokens):
            expr = tokens[i][0].strip()
            if expr.startswith("range "):
                depth += 1
            elif expr == "end":
                if depth == 0:
                    return i + 1
                depth -= 1
            i += 1
        raise ValueError("JSONPath range without end")

    def run(i: int, context) -> int:
        while i < len(tokens):
            expr, text = tokens[i]
            expr = expr.strip()
            if text:
                out.append(text)
            elif expr == "end":
                return i + 1
            elif expr.startswith("range "):
                after = block_end(i + 1)
                for item in _evaluate(expr[len("range ") :].strip(), context):
                    run(i + 1, item)
                i = after
                continue
            elif expr.startswith('"'):
                out.append(json.loads(expr))
            else:
                out.append(" ".join(_text(v) for v in _evaluate(expr, context)))
            i += 1
        return i

    run(0, obj)
    return "".join(out)


def kubectl(args: list[str]) -> int:
    kubeconfig = os.environ.get("KUBECONFIG") or KUBECONFIG
    timeout = 10.0
    output = raw = None
    words: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-o", "--output", "-n", "--namespace", "--kubeconfig") and i + 1 < len(args):
            if arg in ("-o", "--output"):
                output = args[i + 1]
            elif arg == "--kubeconfig":
                kubeconfig = args[i + 1]
            i += 2
            continue
        if arg.startswith(("-o=", "--output=")):
            output = arg.split("=", 1)[1]
        elif arg.startswith("--raw="):
            raw = arg.split("=", 1)[1]
        elif arg.startswith("--request-timeout="):
            timeout = float(arg.split("=", 1)[1].rstrip("s") or 10)
        elif arg.startswith("-"):
            flags.add(arg.split("=", 1)[0])
        else:
            words.append(arg)
        i += 1
    try:
        with open(kubeconfig) as f:
            text = f.read()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    server = re.search(r"server: (\S+)", text).group(1)
    token = re.search(r"token: (\S+)", text).group(1)

    def call(path: str, method: str = "GET", body: dict | None = None):
        answer = api_request(server, path, token, method, body, timeout)
        if answer is None:
            print(REFUSED, file=sys.stderr)
            sys.exit(1)
        return answer

    def fail(status: int, text: str) -> int:
        try:
            reason = json.loads(text)
        except ValueError:
            reason = {}
        if status == 404 and reason.get("reason") == "NotFound":
            print(f"Error from server (NotFound): {reason['message']}", file=sys.stderr)
        else:
            print(f'Error from server (InternalError): an error on the server ("{text.strip()}")', file=sys.stderr)
        return 1

    def show(obj) -> int:
        if output == "json":
            print(json.dumps(obj, indent=2))
        elif output == "name":
            print(f"node/{obj['metadata']['name']}")
        elif output and output.startswith("jsonpath="):
            print(jsonpath(output[len("jsonpath=") :], obj), end="")
        elif obj.get("kind") == "NodeList":
            for node in obj["items"]:
                ready = next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")
                print(node["metadata"]["name"], "Ready" if ready == "True" else "NotReady")
        else:
            print(obj["metadata"]["name"])
        return 0

    verb = words[0] if words else ""
    kind = words[1] if len(words) > 1 else ""
    name = words[2] if len(words) > 2 else ""
    if verb == "get" and raw:
        status, text = call(raw)
        if status != 200:
            return fail(status, text)
        print(text)
        return 0
    if verb == "get" and kind in ("node", "nodes"):
        status, text = call(f"/api/v1/nodes/{name}" if name else "/api/v1/nodes")
        return fail(status, text) if status != 200 else show(json.loads(text))
    if verb in ("cordon", "drain") and kind:
        status, text = call(f"/api/v1/nodes/{kind}", "PATCH", {"spec": {"unschedulable": True}})
        if status != 200:
            return fail(status, text)
        print(f"node/{kind} cordoned")
        return drain(kind, args, call) if verb == "drain" else 0
    if verb == "label" and kind in ("node", "nodes") and name:
        labels = dict(w.split("=", 1) for w in words[3:] if "=" in w)
        status, text = call(f"/api/v1/nodes/{name}", "PATCH", {"metadata": {"labels": labels}})
        if status != 200:
            return fail(status, text)
        print(f"node/{name} labeled")
        return 0
    if verb == "patch" and kind in ("node", "nodes") and name:
        # Only the merge patches the node scripts send: `patch node NAME --type=merge -p JSON`.
        patch = args[args.index("-p") + 1] if "-p" in args else None
        if patch is None or "--type=merge" not in args:
            print(f"stand-in kubectl: unsupported patch: {' '.join(args)}", file=sys.stderr)
            return 64
        status, text = call(f"/api/v1/nodes/{name}", "PATCH", json.loads(patch))
        if status != 200:
            return fail(status, text)
        print(f"node/{name} patched")
        return 0
    if verb == "delete" and kind in ("node", "nodes") and name:
        status, text = call(f"/api/v1/nodes/{name}", "DELETE")
        if status != 200:
            return fail(status, text)
        print(f'node "{name}" deleted')
        if "--wait" in flags and "--wait=false" not in args:
            # kubectl waits until the object is gone (its finalizers done), up to --timeout.
            limit = next((a.split("=", 1)[1] for a in args if a.startswith("--timeout=")), "0s")
            deadline = time.time() + (float(limit.rstrip("s")) or 3600)
            while time.time() < deadline:
                status, _ = call(f"/api/v1/nodes/{name}")
                if status == 404:
                    return 0
                time.sleep(1)
            print(f"error: timed out waiting for the condition on nodes/{name}", file=sys.stderr)
            return 1
        return 0
    if verb == "delete" and kind == "secret" and name.endswith(".node-password.k3s"):
        status, text = call(f"/v1-standin/node-passwords/{name.removesuffix('.node-password.k3s')}", "DELETE")
        if status == 404 and "--ignore-not-found" in flags:
            return 0
        if status != 200:
            return fail(status, text)
        print(f'secret "{name}" deleted')
        return 0
    if verb == "get" and kind in ("configmap", "configmaps") and name:
        status, text = call(f"/api/v1/namespaces/kube-system/configmaps/{name}")
        return fail(status, text) if status != 200 else show(json.loads(text))
    if verb == "apply" and "-f" in flags and kind:
        # `kubectl apply -f FILE` of one kube-system ConfigMap (lib.sh k3s_ha_save_record).
        with open(kind) as f:
            obj = json.load(f)
        if obj.get("kind") != "ConfigMap" or obj["metadata"].get("namespace") != "kube-system":
            print(f"stand-in kubectl: unsupported apply: {obj.get('kind')}", file=sys.stderr)
            return 64
        name = obj["metadata"]["name"]
        status, text = call(f"/api/v1/namespaces/kube-system/configmaps/{name}", "PUT", obj)
        if status != 200:
            return fail(status, text)
        print(f"configmap/{name} configured")
        return 0
    if verb == "get" and kind in ("pv", "persistentvolumes"):
        # The lab runs no workloads, so no volumes: an empty list, as the API would return it.
        return show({"kind": "PersistentVolumeList", "apiVersion": "v1", "items": []})
    print(f"stand-in kubectl: unsupported call: {' '.join(args)}", file=sys.stderr)
    return 64


def drain(node: str, args: list[str], call) -> int:
    """kubectl drain after the cordon (k8s.io/kubectl pkg/drain, evictPods): evicts every pod on
    the node through the Eviction API; one a PodDisruptionBudget protects (429) is tried again
    every 5 s until --timeout (0: for ever), and then drain fails."""
    limit = next((a.split("=", 1)[1] for a in args if a.startswith("--timeout=")), "0s")
    seconds = float(limit.rstrip("s") or 0)
    deadline = time.time() + seconds if seconds else float("inf")
    status, text = call(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
    pending = [(p["namespace"], p["name"]) for p in json.loads(text).get("items", [])] if status == 200 else []
    while pending:
        namespace, name = pending[0]
        print(f"evicting pod {namespace}/{name}", file=sys.stderr)
        status, text = call(f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", "POST", {})
        if status in (200, 201, 404):
            print(f"pod/{name} evicted")
            pending.pop(0)
            continue
        if time.time() >= deadline:
            error = f'error when evicting pods/"{name}" -n "{namespace}": global timeout reached: {limit}'
            print(f'There are pending pods in node "{node}" when an error occurred: {error}', file=sys.stderr)
            print(
                f'error: unable to drain node "{node}" due to error: [{error}], continuing command...', file=sys.stderr
            )
            print(f"There are pending nodes to be drained:\n {node}", file=sys.stderr)
            return 1
        message = json.loads(text).get("message", text) if text.startswith("{") else text
        print(f'error when evicting pods/"{name}" -n "{namespace}" (will retry after 5s): {message}', file=sys.stderr)
        time.sleep(max(0.0, min(5.0, deadline - time.time())))
    print(f"node/{node} drained")
    return 0


# --- etcd-snapshot and cluster-reset --------------------------------------------------------


def etcd_snapshot(args: list[str]) -> int:
    config = load_config()
    snapshots = os.path.join(data_dir(config), "server", "db", "snapshots")
    os.makedirs(snapshots, mode=0o700, exist_ok=True)
    sub = args[0] if args and not args[0].startswith("-") else "save"
    if sub in ("ls", "list"):
        for name in sorted(os.listdir(snapshots)):
            print(name, os.path.getsize(os.path.join(snapshots, name)))
        return 0
    if sub != "save":
        print(f"stand-in k3s: unsupported etcd-snapshot {sub}", file=sys.stderr)
        return 64
    prefix = "on-demand"
    for arg in args:
        if arg.startswith("--name="):
            prefix = arg.split("=", 1)[1]
    # pkg/etcd/snapshot.go: <name>-<node>-<unix time>.
    path = os.path.join(snapshots, f"{prefix}-{node_name(config)}-{int(time.time())}")
    result = subprocess.run(
        ["etcdctl", "--endpoints=http://127.0.0.1:2379", "snapshot", "save", path],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=60,
    )
    if result.returncode != 0:
        print(f'level=fatal msg="failed to save snapshot: {result.stderr.strip()}"', file=sys.stderr)
        return 1
    log(f"Snapshot {os.path.basename(path)} saved.")
    print(path)
    return 0


def cluster_reset(config: dict, restore: str | None) -> int:
    # pkg/cli/server/server.go: refused while a server URL is set.
    if config.get("server"):
        fatal(
            "cannot perform cluster-reset while server URL is set - remove server from configuration before resetting"
        )
    server = Server(config)
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen does
    try:
        probe.bind((server.ip, 2380))
    except OSError:
        fatal(f"listen tcp {server.ip}:2380: bind: address already in use")
    finally:
        probe.close()
    old = server.db + f".old-{int(time.time())}"
    if restore:
        if not os.path.isfile(restore):
            fatal(f"etcd: snapshot path does not exist: {restore}")
        if os.path.isdir(server.db):
            os.rename(server.db, old)
        server.member_name = f"{server.name}-{uuid.uuid4().hex[:8]}"
        result = subprocess.run(
            ["etcdctl", "snapshot", "restore", restore, "--data-dir", server.db, "--name", server.member_name,
             "--initial-cluster", f"{server.member_name}={server.peer_url()}",
             "--initial-advertise-peer-urls", server.peer_url()],
            capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            fatal(f"etcd restore failed: {result.stderr.strip()}")
        with open(os.path.join(server.db, "name"), "w") as f:
            f.write(server.member_name)
    else:
        server.set_name()
        process = subprocess.Popen(
            ["etcd", "--name", server.member_name, "--data-dir", server.db, "--force-new-cluster",
             "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
             "--listen-peer-urls", server.peer_url(), "--initial-advertise-peer-urls", server.peer_url(),
             "--logger", "zap", "--log-level", "warn"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        server.etcd_process = process
        server.wait_etcd_serving(60)
        process.terminate()
        process.wait(20)
    log("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now.")
    return 0


def _refused_versions() -> set[str]:
    """Not K3s behaviour: a fault the lab injects (a release that does not come up on this
    host, for whatever reason), so a test can fail one step of an upgrade half way."""
    try:
        with open(FAULTS) as f:
            return set(f.read().split())
    except FileNotFoundError:
        return set()


def main(argv: list[str]) -> int:
    program, args = os.path.basename(argv[0]), argv[1:]
    if program == "kubectl":
        return kubectl(args)
    if not args or args[0] in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (stand-in)\ngo version go1.25.0 (stand-in)")
        return 0
    command, rest = args[0], args[1:]
    if command in ("server", "agent") and VERSION in _refused_versions():
        fatal(f"lab fault: this host was told that {VERSION} fails to start ({FAULTS})")
    if command == "server":
        restore = None
        reset = False
        config_path = CONFIG
        for index, arg in enumerate(rest):
            if arg == "--cluster-reset":
                reset = True
            elif arg.startswith("--cluster-reset-restore-path="):
                restore = arg.split("=", 1)[1]
            elif arg in ("--config", "-c") and index + 1 < len(rest):
                config_path = rest[index + 1]
            elif arg.startswith("--config="):
                config_path = arg.split("=", 1)[1]
        config = load_config(config_path)
        if reset:
            return cluster_reset(config, restore)
        Server(config).run()
        return 0
    if command == "agent":
        agent()
        return 0
    if command == "kubectl":
        return kubectl(rest)
    if command == "etcd-snapshot":
        return etcd_snapshot(rest)
    print(f"stand-in k3s: unsupported command {command}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    # The multicall wrapper passes the name it was called by (k3s, kubectl) first.
    sys.exit(main(sys.argv[1:]))
