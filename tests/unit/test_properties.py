"""Property tests (issue 20.6, Hypothesis): the cron grammar, CIDR unions and command quoting,
over generated inputs rather than the handful of examples the other tests name."""

from __future__ import annotations

import ipaddress
import shlex
import subprocess

import k3s_rules as rules
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from k3s_ha.aws.checks import world_open
from k3s_ha.bootstrap.commands import parse_command, remote_command
from k3s_ha.cron_schedule import CronError, parse

# --- the cron grammar (cron_schedule.py, robfig/cron v3's standard parser) ----------------------


@given(st.text(max_size=40))
def test_any_text_is_a_schedule_or_a_cron_error_never_a_crash(spec: str) -> None:
    try:
        parse(spec)
    except CronError:
        pass


@given(st.integers(0, 59), st.integers(0, 23), st.integers(1, 28), st.integers(1, 12), st.integers(0, 6))
def test_every_in_range_five_field_schedule_is_accepted(minute, hour, day, month, weekday) -> None:
    parse(f"{minute} {hour} {day} {month} {weekday}")
    parse(f"*/{minute + 1} */{hour + 1} * * *")


@given(st.integers(60, 10_000) | st.integers(-10_000, -1))
def test_a_minute_out_of_range_is_refused(minute: int) -> None:
    try:
        parse(f"{minute} * * * *")
    except CronError:
        return
    raise AssertionError(f"{minute} * * * * was accepted")


# --- CIDR unions: the program's check and the policy's agree ------------------------------------


def _split(network: ipaddress.IPv4Network, depth: int, draw) -> list[ipaddress.IPv4Network]:
    """`network` cut into smaller blocks that together cover exactly it."""
    if depth == 0 or network.prefixlen >= 30 or not draw(st.booleans()):
        return [network]
    low, high = network.subnets(prefixlen_diff=1)
    return _split(low, depth - 1, draw) + _split(high, depth - 1, draw)


def _cover(data) -> list[ipaddress.IPv4Network]:
    """0.0.0.0/0 cut into at least two blocks (one block is the plain case other tests name)."""
    blocks = _split(ipaddress.ip_network("0.0.0.0/0"), data.draw(st.integers(1, 8)), data.draw)
    if len(blocks) == 1:
        blocks = list(ipaddress.ip_network("0.0.0.0/0").subnets(prefixlen_diff=1))
    return blocks


@given(st.data())
def test_blocks_that_cover_the_internet_are_world_open_however_they_are_split(data) -> None:
    blocks = _cover(data)
    cidrs = [str(b) for b in data.draw(st.permutations(blocks))]
    assert world_open(blocks)
    assert sorted(rules.world_covered(cidrs)) == sorted(cidrs)


@given(st.data())
def test_blocks_that_leave_one_address_out_are_not_world_open(data) -> None:
    blocks = _cover(data)
    dropped = blocks.pop(data.draw(st.integers(0, len(blocks) - 1)))
    # Put back all of the dropped block but one address.
    address = data.draw(st.integers(0, dropped.num_addresses - 1))
    hole = ipaddress.ip_network(f"{dropped.network_address + address}/32")
    blocks += list(dropped.address_exclude(hole)) if dropped != hole else []
    assert not world_open(blocks)
    assert rules.world_covered([str(b) for b in blocks]) == []


# --- command quoting (commands.py) -----------------------------------------------------------

_PARAM = st.from_regex(r"K3S_[A-Z][A-Z0-9_]{0,12}", fullmatch=True)
_VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@given(st.dictionaries(_PARAM, _VALUE, max_size=4), st.integers(1, 10_000))
def test_parameters_round_trip_through_the_command_text(params: dict[str, str], seconds: int) -> None:
    text = remote_command("start-server", params, seconds, digest="0" * 32)
    assert parse_command(text) == ("start-server", params)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(_PARAM, _VALUE, min_size=1, max_size=3))
def test_the_shell_hands_each_parameter_to_the_script_unchanged(params: dict[str, str]) -> None:
    """What bash makes of the text: `env` with each value as one word, exactly as given."""
    text = remote_command("start-server", params, 60, digest="0" * 32)
    env_part = text.split(" bash ", 1)[0].removeprefix("sudo -n ")  # "env K=V ..."
    # Options before the assignments: env -i -0 then prints just these, NUL-separated.
    shown = subprocess.run(
        ["bash", "-c", "env -i -0 " + env_part.removeprefix("env ")], capture_output=True, check=True
    ).stdout
    seen = dict(entry.split("=", 1) for entry in shown.decode().split("\0") if entry.startswith("K3S_"))
    assert seen == params
    assert shlex.split(env_part)[1:] == [f"{k}={params[k]}" for k in sorted(params)]
