"""The sim board's line pacing (`baudrate`): how long the line is booked, on a clock the test moves."""

from __future__ import annotations

import pytest

from jumpstarter_lab_driver_sim import dut
from jumpstarter_lab_driver_sim.dut import LinePacer


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(dut.time, "monotonic", lambda: now[0])
    return now


def test_115200_baud_carries_11520_bytes_a_second(clock):
    line = LinePacer(115200)
    assert line.bytes_per_second == 11520 and line.chunk == 115
    assert line.reserve(11520) == pytest.approx(1.0)
    assert line.reserve(5760) == pytest.approx(1.5)  # booked after the first second, not alongside it


def test_a_busy_line_makes_up_for_jitter_and_an_idle_line_saves_nothing(clock):
    line = LinePacer(115200)
    line.reserve(1152)  # 0.1 s
    clock[0] += 0.12  # the event loop came back 20 ms late: the next bytes go at once...
    assert line.reserve(1152) == pytest.approx(0.08)  # ...and the average stays at the line rate
    clock[0] += 10  # idle: no credit for the time the line was unused
    assert line.reserve(1152) == pytest.approx(0.1)


def test_sim_board_refuses_a_baudrate_that_is_not_positive():
    from jumpstarter_lab_driver_sim.board import SimBoard

    with pytest.raises(ValueError, match="baudrate must be positive"):
        SimBoard(baudrate=0)
