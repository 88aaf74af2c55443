"""etcdSnapshotSchedule is checked with the grammar K3s parses it with, so a schedule K3s would
drop (leaving the cluster without snapshots) is refused before anything is created."""

import pytest
from k3s_ha import ConfigError
from k3s_ha.bootstrap.checks import snapshot_schedule
from k3s_ha.cron_schedule import CronError, parse
from support import engine
from support.helpers import SECRET_KEYS, config, stdin_yaml


@pytest.mark.parametrize(
    "spec",
    [
        "0 */12 * * *",  # the K3s default
        "*/5 * * * *",
        "0 0,12 * * *",
        "15 3 1-7 * 1",
        "0 4 * jan-mar,DEC MON-fri",
        "30 2 ? * sun",
        "5/15 * * * *",  # "N/step" is N-max/step in robfig/cron
        "0 0 29 2 *",  # leap days: fires every four years, within cron's five-year search
        "  0   3 * * *  ",  # cron splits on any whitespace
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every 6h",
        "@every 1h30m",
        "CRON_TZ=Europe/Berlin 0 3 * * *",
        "TZ=UTC @daily",
    ],
)
def test_schedules_k3s_accepts_are_accepted(spec):
    parse(spec)
    assert snapshot_schedule(spec) == spec


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("   ", "expected exactly 5 fields"),
        ("0 */12 * *", "expected exactly 5 fields"),
        ("0 0 */12 * * *", "expected exactly 5 fields"),  # no seconds field in K3s' parser
        ("60 * * * *", "above maximum"),
        ("0 24 * * *", "above maximum"),
        ("0 0 0 * *", "below minimum"),
        ("0 0 * 13 *", "above maximum"),
        ("0 0 * * 7", "above maximum"),  # robfig/cron: Sunday is 0 only
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "beyond end"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("*/2/3 * * * *", "too many slashes"),
        ("0 0 L * *", "failed to parse int"),
        ("0 0 * * MON#2", "failed to parse int"),
        ("every day", "expected exactly 5 fields"),
        ("@reboot", "unrecognized descriptor"),
        ("@daily ", "unrecognized descriptor"),  # descriptors must match exactly
        ("@every", "unrecognized descriptor"),
        ("@every 1 hour", "duration"),
        ("@every 10s", "shorter than a minute"),
        ("@every -1h", "shorter than a minute"),  # cron rounds it up to every second
        ("CRON_TZ=Mars/Olympus 0 3 * * *", "location"),
        ("TZ=UTC", "no schedule"),
        ("0 , * * *", "never"),
        ("0 0 31 2 *", "never"),  # February 31st
        ("0 0 30,31 2 *", "never"),
    ],
)
def test_schedules_k3s_would_drop_are_refused(spec, words):
    with pytest.raises(CronError) as caught:
        parse(spec)
    assert words in str(caught.value)


def test_dom_and_dow_both_set_fire_on_either_like_cron():
    # Both restricted: robfig/cron fires when EITHER matches, so Feb 31st OR Mondays fires.
    parse("0 0 31 2 1")


def test_the_refusal_names_the_field_and_the_fix():
    with pytest.raises(ConfigError) as caught:
        snapshot_schedule("0 25 * * *")
    error = caught.value
    assert error.field == "etcdSnapshotSchedule / etcd_snapshot_schedule"
    assert "K3s" in error.problem and "no snapshots" in error.problem
    assert "0 */12 * * *" in error.fix and "@daily" in error.fix


@pytest.mark.parametrize("spec", ["", "   ", "0 25 * * *", "@reboot", "0 0 31 2 *"])
def test_a_bad_schedule_creates_nothing(spec):
    with pytest.raises(ConfigError) as caught:
        engine.run(engine.main_program, config(etcdSnapshotSchedule=spec), SECRET_KEYS)
    assert caught.value.registrations == []
    assert caught.value.field == "etcdSnapshotSchedule / etcd_snapshot_schedule"


def test_a_bad_schedule_in_a_bootstrap_server_config_is_refused_too():
    from k3s_ha.bootstrap.settings import parse_bootstrap_args as validate_bootstrap_args

    with pytest.raises(ConfigError) as caught:
        validate_bootstrap_args(
            {
                "servers": [{"name": "server-0", "address": "192.0.2.10"}],
                "ssh": {"user": "ubuntu", "private_key": "key"},
                "server_config": {"etcd-snapshot-schedule-cron": "nightly"},
            }
        )
    assert "etcd-snapshot-schedule-cron" in caught.value.field


def test_a_good_schedule_reaches_every_server_config():
    run = engine.run(engine.main_program, config(etcdSnapshotSchedule="CRON_TZ=UTC 0 3 * * *"), SECRET_KEYS)
    for index in range(3):
        server = stdin_yaml(run, f"dev-server-{index}-start")
        assert server["etcd-snapshot-schedule-cron"] == "CRON_TZ=UTC 0 3 * * *"


def test_without_a_time_zone_database_zone_names_are_checked_by_shape_only(monkeypatch):
    import zoneinfo

    monkeypatch.setattr(zoneinfo, "available_timezones", lambda: set())
    parse("CRON_TZ=Europe/Berlin 0 3 * * *")
    with pytest.raises(CronError, match="not a time zone name"):
        parse("CRON_TZ=../../etc/passwd 0 3 * * *")
