"""Fixtures of the lab tier (lab/fixtures.py): make_lab, and the scenario clock."""

from lab.fixtures import lab_possible, make_lab, scenario_clock  # noqa: F401
