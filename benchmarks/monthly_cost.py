"""What the dev and prod stacks cost a month on AWS, counted from what the program registers.

    python benchmarks/monthly_cost.py      # the README's cost table (tests/engine/test_cost_estimate.py keeps them equal)

Each stack file runs under the recording mock engine (as tests/engine/test_project_config.py
runs it) and its registrations are priced: instances by type, their gp3 root volumes, NAT
gateways, the API load balancer, and every public IPv4 address (public nodes, the bastion, NAT
gateways' Elastic IPs, one per zone of an internet-facing load balancer). A month is 730 hours.

Prices are eu-west-1 on-demand list prices in USD, from stored copies of AWS price data (no
live price list is reachable where this is developed); each says where it came from and how
sure it is. Check them in the AWS Pricing Calculator before you budget on them.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOURS = 730


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


PRICES: dict[str, Price] = {
    "t3.micro": Price(0.0114, "hour", "AWS offer file row, SKU DXH6X4VVFUT4EUU5, effective 2026-09-01"),
    "t3.small": Price(0.0228, "hour", "price tables, and t3.micro x2 (t3 prices scale with size): unverified"),
    "t3.medium": Price(0.0456, "hour", "price tables, and t3.micro x4: unverified"),
    "m6i.large": Price(0.107, "hour", "price tables, and m5.xlarge ($0.214, offer file) / 2: unverified"),
    "gp3": Price(0.088, "GB-month", "Pricing API description, gp3 EU (Ireland)"),
    "nat": Price(0.048, "hour", "AmazonEC2 offer 20260925174521 eu-west-1, EU-NatGateway-Hours"),
    "nlb": Price(0.0252, "hour", "not found for eu-west-1: the ALB's rate, equal to the NLB's elsewhere: unverified"),
    "nlcu": Price(0.006, "NLCU-hour", "us-east-1 and ap-northeast-2 rate: unverified for eu-west-1"),
    "ipv4": Price(0.005, "hour", "public IPv4 charge since 2024-02-01, EU-PublicIPv4:InUseAddress"),
}
NOT_COUNTED = (
    "traffic: NAT processing $0.048/GB, cross-zone $0.01/GB each way, internet egress $0.09/GB; "
    "S3 snapshots; and what workloads make through the integration: each LoadBalancer Service's "
    "load balancer (about $18 a month and up) and each claim's gp3 volume ($0.088/GB-month)"
)


def _stack_run(stack: str):
    for path in (str(ROOT / "components"), str(ROOT / "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    import yaml
    from k3s_ha import operator_address
    from support import engine
    from support.helpers import BASE_CONFIG, SECRET_KEYS

    config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    values = {k.split(":", 1)[1] if k.startswith("k3s-ha:") else k: v for k, v in config.items()}
    # dev's `auto` address: any one prices the same (no lookup of this machine's address).
    resolver, operator_address.resolver = operator_address.resolver, lambda: "203.0.113.7"
    try:
        return engine.run(engine.main_program, {**BASE_CONFIG, **values}, SECRET_KEYS, stack=stack)
    finally:
        operator_address.resolver = resolver


def line_items(stack: str) -> list[tuple[str, str, float]]:
    """(what, how many, USD a month) for `stack`, from its registrations."""
    run = _stack_run(stack)
    instances = run.by_type("aws:ec2/instance:Instance")
    items: list[tuple[str, str, float]] = []
    for kind, count in sorted(Counter(i.inputs["instanceType"] for i in instances).items()):
        items.append((f"EC2 {kind}", f"{count}", count * PRICES[kind].usd * HOURS))
    gb = sum(int(i.inputs["rootBlockDevice"]["volumeSize"]) for i in instances)
    items.append(("EBS gp3 root volumes", f"{gb} GB", gb * PRICES["gp3"].usd))
    nats = len(run.by_type("aws:ec2/natGateway:NatGateway"))
    if nats:
        items.append(("NAT gateways", f"{nats}", nats * PRICES["nat"].usd * HOURS))
    addresses = sum(i.inputs.get("associatePublicIpAddress") is True for i in instances)
    addresses += len(run.by_type("aws:ec2/eip:Eip"))
    for balancer in run.by_type("aws:lb/loadBalancer:LoadBalancer"):
        items.append(("API load balancer (NLB), 1 NLCU", "1", (PRICES["nlb"].usd + PRICES["nlcu"].usd) * HOURS))
        if not balancer.inputs.get("internal"):
            addresses += len(balancer.inputs["subnets"])
    items.append(("public IPv4 addresses", f"{addresses}", addresses * PRICES["ipv4"].usd * HOURS))
    return items


def table() -> str:
    lines = ["| stack | item | count | USD a month |", "|---|---|---|---|"]
    for stack in ("dev", "prod"):
        items = line_items(stack)
        lines += [f"| {stack} | {what} | {count} | {usd:,.2f} |" for what, count, usd in items]
        lines.append(f"| **{stack}** | **total** | | **{sum(usd for *_, usd in items):,.2f}** |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
    print(f"\nNot counted: {NOT_COUNTED}.")
    for name, price in PRICES.items():
        print(f"- {name}: ${price.usd} per {price.unit} ({price.source})")
