"""The cron grammar K3s reads `etcd-snapshot-schedule-cron` with, modelled so a schedule K3s
would drop is refused here instead.

K3s builds its snapshot scheduler with `cron.New(cron.WithLogger(cronLogger))`
(k3s-io/k3s pkg/etcd/etcd.go, NewETCD) and registers the job with
`e.cron.AddJob(e.config.EtcdSnapshotCron, ...)` ignoring the returned error
(pkg/etcd/snapshot.go, setSnapshotFunction): a spec the parser refuses means no scheduled
snapshots at all, with nothing but a log line. `cron.New` without `WithParser` uses
robfig/cron/v3's standard parser, `NewParser(Minute | Hour | Dom | Month | Dow | Descriptor)`
(robfig/cron v3 parser.go): exactly five fields (no seconds), `*` `?` ranges `a-b`, steps
`/n` (`n/step` means n-max/step), lists, month and weekday names (case-insensitive), the
descriptors @yearly @annually @monthly @weekly @daily @midnight @hourly and `@every <Go
duration>`, and an optional `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix.

Stricter than robfig/cron on purpose, because each of these also leaves the cluster without
snapshots: a schedule that can never fire (a field listing nothing, February 31st; cron's
Next gives up after five years and the job never runs), `@every` under a minute (cron rounds
anything below a second, negative included, up to every second), and a zone prefix with no
schedule after it (v3's parser slices with the index of a missing space and panics).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass


class CronError(ValueError):
    """The spec is one K3s' cron parser refuses (or one that never takes a snapshot)."""


@dataclass(frozen=True)
class _Bounds:
    """One cron field's value range and the names it accepts."""

    low: int
    high: int
    names: dict[str, int] | None = None


_MONTH_NAMES = {name.lower(): index for index, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {name: index for index, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Field order and bounds of robfig/cron v3 (parser.go / spec.go): Sunday is 0 only, 7 is refused.
_FIELDS = (
    ("minute", _Bounds(0, 59)),
    ("hour", _Bounds(0, 23)),
    ("day of month", _Bounds(1, 31)),
    ("month", _Bounds(1, 12, _MONTH_NAMES)),
    ("day of week", _Bounds(0, 6, _DAY_NAMES)),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_EVERY = "@every "
_IANA_NAME = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
MIN_EVERY_SECONDS = 60
_ATOI = re.compile(r"[+-]?[0-9]+")  # Go's strconv.Atoi: optional sign, ASCII digits only
# Go's time.ParseDuration: a signed sequence of decimal numbers, each with a unit ("0" alone too).
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class _Field:
    """One parsed cron field."""

    values: frozenset[int]
    star: bool  # `*` or `?` with step 1: decides how day of month and day of week combine


def parse(spec: str) -> None:
    """Raise CronError when K3s would not schedule snapshots with `spec`."""
    if not isinstance(spec, str) or len(spec) == 0:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        if space < 0:
            raise CronError(f"{spec!r} names a time zone but no schedule after it")
        _check_zone(spec[spec.index("=") + 1 : space])
        spec = spec[space:].strip()
    if spec.startswith("@"):
        _parse_descriptor(spec)
        return
    fields = spec.split()
    if len(fields) != len(_FIELDS):
        raise CronError(f"expected exactly {len(_FIELDS)} fields, found {len(fields)}: {fields}")
    parsed = [_parse_field(text, bounds) for text, (_, bounds) in zip(fields, _FIELDS)]
    _check_fires(*parsed)


def _check_zone(name: str) -> None:
    # Go's time.LoadLocation: "" and "UTC" are UTC, "Local" the node's zone, else the IANA database.
    if name in ("", "UTC", "Local"):
        return
    if not _IANA_NAME.fullmatch(name) or ".." in name:
        raise CronError(f"provided bad location {name}: not a time zone name")
    # Imported here: only a schedule with a time zone needs it, and it costs every program
    # ~1.5 ms to import (it loads sysconfig to find the database).
    import zoneinfo

    if not zoneinfo.available_timezones():
        return  # no time zone database here to check against (the node has its own)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(f"provided bad location {name}: unknown time zone") from None


def _parse_descriptor(spec: str) -> None:
    if spec in DESCRIPTORS:
        return
    if not spec.startswith(_EVERY):
        raise CronError(f"unrecognized descriptor: {spec}")
    seconds = _go_duration_seconds(spec[len(_EVERY) :])
    if seconds < MIN_EVERY_SECONDS:
        raise CronError(
            f"{spec}: an interval shorter than a minute would snapshot almost constantly "
            "(cron runs anything under a second, negative included, every second)"
        )


def _go_duration_seconds(text: str) -> float:
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    total = 0.0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match or match.group(1) in ("", "."):
            raise CronError(f"failed to parse duration @every {text}: invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not body:
        raise CronError(f"failed to parse duration @every {text}: invalid duration {text!r}")
    return -total if text.startswith("-") else total


def _number(text: str, bounds: _Bounds) -> int:
    if bounds.names and text.lower() in bounds.names:
        return bounds.names[text.lower()]
    if not _ATOI.fullmatch(text):
        raise CronError(f"failed to parse int from {text}")
    value = int(text)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value


def _parse_range(expr: str, bounds: _Bounds) -> _Field:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _number(low_and_high[0], bounds)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _number(low_and_high[1], bounds)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _number(range_and_step[1], bounds=_Bounds(0, 0))
        if len(low_and_high) == 1:
            end = bounds.high
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return _Field(frozenset(range(start, end + 1, step)), star)


def _parse_field(text: str, bounds: _Bounds) -> _Field:
    values: set[int] = set()
    star = False
    for expr in (part for part in text.split(",") if part):  # Go's FieldsFunc drops empty parts
        parsed = _parse_range(expr, bounds)
        values |= parsed.values
        star = star or parsed.star
    return _Field(frozenset(values), star)


def _check_fires(minute: _Field, hour: _Field, dom: _Field, month: _Field, dow: _Field) -> None:
    """robfig/cron spec.go dayMatches: if either day field is a star both must match, else either."""
    # Some listed day of month exists in some listed month (2024 is a leap year: Feb 29 counts).
    dom_fits = any(day <= calendar.monthrange(2024, m)[1] for m in month.values for day in dom.values)
    if dom.star or dow.star:
        days = dom_fits and bool(dow.values)  # a star day of month fits every month
    else:
        days = dom_fits or bool(dow.values)  # every month has every weekday
    if not (minute.values and hour.values and days):
        raise CronError("this schedule never fires, so K3s would never take a snapshot")
