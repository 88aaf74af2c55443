"""`auto` in sshAllowedCidrs / apiAllowedCidrs: the operator's public IPv4 address as a /32.

The real lookup (`checkip`) runs against a small HTTP server on loopback; everything else uses
the stub conftest.py installs, so no test reaches the network.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from k3s_ha import operator_address
from k3s_ha.aws.settings import parse_cluster_args
from k3s_ha.errors import ConfigError
from k3s_ha.operator_address import OperatorAddressError, checkip
from support import engine
from support.helpers import OPERATOR_ADDRESS, SECRET_KEYS, config, ingress_rules

ROOT = Path(__file__).resolve().parents[2]
ARGS = {"ssh_private_key": "key", "ssh_public_key": "ssh-ed25519 AAAA test"}


@pytest.fixture
def echo_server() -> Iterator[dict]:
    """A loopback HTTP server answering every GET with `reply["body"]` after `reply["delay"]` s."""
    reply = {"body": b"203.0.113.99\n", "delay": 0.0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            time.sleep(reply["delay"])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.block_on_close = False  # a slow handler must not hold up the test's end
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    reply["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield reply
    finally:
        server.shutdown()
        server.server_close()


def test_checkip_reads_the_address_the_service_answers(echo_server):
    assert checkip(echo_server["url"], timeout=2) == "203.0.113.99"


@pytest.mark.parametrize("body", [b"<html>captive portal</html>", b"", b"2001:db8::7\n", b"0.0.0.0\n", b"127.0.0.1"])
def test_checkip_refuses_an_answer_that_is_no_client_ipv4_address(echo_server, body):
    echo_server["body"] = body
    with pytest.raises(OperatorAddressError, match="answered"):
        checkip(echo_server["url"], timeout=2)


def test_checkip_gives_up_after_its_timeout(echo_server):
    echo_server["delay"] = 2.0
    started = time.monotonic()
    with pytest.raises(OperatorAddressError, match="no answer from .* within 0.3s"):
        checkip(echo_server["url"], timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_checkip_fails_clearly_when_nothing_listens():
    with pytest.raises(OperatorAddressError, match="no answer from http://127.0.0.1:9/"):
        checkip("http://127.0.0.1:9/", timeout=1)


def test_the_default_lookup_asks_checkip_amazonaws_com_over_https():
    assert operator_address.CHECKIP_URL == "https://checkip.amazonaws.com"
    assert checkip.__defaults__ == (operator_address.CHECKIP_URL, operator_address.TIMEOUT_SECONDS)
    assert operator_address.TIMEOUT_SECONDS <= 10


def test_auto_becomes_the_operators_address_once_for_both_lists():
    calls = []

    def resolve():
        calls.append(1)
        return "203.0.113.44"

    settings, _ = parse_cluster_args(
        {**ARGS, "ssh_allowed_cidrs": ["auto", "10.1.0.0/16"], "api_allowed_cidrs": ["auto"]}, resolve
    )
    assert [str(c) for c in settings.ssh_cidrs] == ["203.0.113.44/32", "10.1.0.0/16"]
    assert [str(c) for c in settings.api_cidrs] == ["203.0.113.44/32"]
    assert calls == [1]


def test_listed_addresses_need_no_lookup():
    def resolve():
        raise AssertionError("looked up although no list says auto")

    settings, _ = parse_cluster_args(
        {**ARGS, "ssh_allowed_cidrs": ["203.0.113.7/32"]}, resolve_operator_address=resolve
    )
    assert [str(c) for c in settings.ssh_cidrs] == ["203.0.113.7/32"]


def test_an_address_that_cannot_be_learned_is_refused_naming_the_field_and_the_fix():
    def resolve():
        raise OperatorAddressError("no answer from https://checkip.amazonaws.com within 5s (timed out)")

    with pytest.raises(ConfigError) as caught:
        parse_cluster_args({**ARGS, "ssh_allowed_cidrs": ["203.0.113.7/32"], "api_allowed_cidrs": ["auto"]}, resolve)
    error = caught.value
    assert error.field == "apiAllowedCidrs / api_allowed_cidrs"
    assert "could not be learned: no answer from https://checkip.amazonaws.com" in error.problem
    assert "203.0.113.7/32" in error.fix


def test_a_failed_lookup_registers_nothing(monkeypatch):
    def unreachable():
        raise OperatorAddressError("no answer")

    monkeypatch.setattr(operator_address, "resolver", unreachable)
    with pytest.raises(ConfigError) as caught:
        engine.run(engine.main_program, config(sshAllowedCidrs=["auto"]), SECRET_KEYS)
    assert caught.value.registrations == []


def test_the_firewall_opens_ssh_and_the_api_to_the_looked_up_address(operator_address_stub):
    run = engine.run(engine.main_program, config(sshAllowedCidrs=["auto"], apiAllowedCidrs=["auto"]), SECRET_KEYS)
    by_port = {}
    for rule in ingress_rules(run):
        if rule.inputs.get("cidrIpv4"):
            by_port.setdefault(rule.inputs["fromPort"], set()).add(rule.inputs["cidrIpv4"])
    assert by_port[22] == {f"{OPERATOR_ADDRESS}/32"}
    assert f"{OPERATOR_ADDRESS}/32" in by_port[6443]
    assert operator_address_stub == [OPERATOR_ADDRESS]


def _stack(name: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())["config"]


def test_dev_uses_auto_and_prod_never_does():
    dev = _stack("dev")
    assert dev["k3s-ha:sshAllowedCidrs"] == ["auto"] and dev["k3s-ha:apiAllowedCidrs"] == ["auto"]
    prod = _stack("prod")
    assert "auto" not in yaml.safe_dump(prod)
