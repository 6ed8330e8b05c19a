"""The CLI's shared option types: durations as upstream and people write them."""

from __future__ import annotations

import argparse

import pytest

from jumpstarter_lab.cli.common import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("2.5", 2.5), ("30m", 1800), ("1h30m", 5400), ("1d", 86400), ("2.5h", 9000), ("1d2h3m4s", 93784),
    ("00:30:00", 1800), ("1:02:03", 3723), ("10S", 10), (" 5m ", 300), ("0", 0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "m", "1m1h", "-5", "nan", "inf", "1:60:00", "five minutes", "1h 30m"])
def test_what_is_not_a_duration_is_named(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("command", [["lease", "create", "-l", "board=sim"], ["shell", "--selector", "board=sim"]])
def test_every_way_to_take_a_lease_has_the_same_options_and_defaults(command):
    from jumpstarter_lab.cli import build_parser
    from jumpstarter_lab.wire import defaults

    args = build_parser().parse_args(command)
    assert (args.duration, args.ttl, args.acquisition_timeout) == (
        defaults.LEASE_DURATION, defaults.LEASE_TTL, defaults.LEASE_WAIT)
    args = build_parser().parse_args([*command, "--duration", "1h", "--ttl", "5m", "--acquisition-timeout", "0"])
    assert (args.duration, args.ttl, args.acquisition_timeout) == (3600, 300, 0)
