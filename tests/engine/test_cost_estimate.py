"""The README's monthly cost table is what benchmarks/monthly_cost.py counts from the stack
files' registrations: a stack change (more nodes, another instance type, NAT gateways) changes
the table, and this test fails until the README shows it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _monthly_cost():
    spec = importlib.util.spec_from_file_location("monthly_cost", ROOT / "benchmarks" / "monthly_cost.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["monthly_cost"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_readme_cost_table_is_the_one_the_stacks_register() -> None:
    table = _monthly_cost().table()
    assert table in (ROOT / "README.md").read_text(), (
        "README's cost table is stale: paste `python benchmarks/monthly_cost.py`"
    )


def test_prod_pays_for_what_private_nodes_add_and_dev_does_not() -> None:
    cost = _monthly_cost()
    dev = {what: count for what, count, _ in cost.line_items("dev")}
    prod = {what: count for what, count, _ in cost.line_items("prod")}
    assert "NAT gateways" not in dev and prod["NAT gateways"] == "3"
    assert prod["EC2 t3.micro"] == "1", "the bastion"
    # prod's nodes have no public address: only the 3 NAT Elastic IPs, the bastion and the
    # internet-facing balancer's 3 zones; dev's 4 nodes each have one.
    assert prod["public IPv4 addresses"] == "7" and dev["public IPv4 addresses"] == "4"
