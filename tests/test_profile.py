"""curate.profile: exclusive phase times (a phase inside another pauses it) and the backend split."""

from __future__ import annotations

import time

import pytest

from curate.profile import Profile, format_profile


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_nested_phases_are_exclusive_and_add_up_to_the_outer_wall_time():
    prof = Profile()
    t0 = time.perf_counter()
    with prof.phase("other"):
        _spin(0.02)
        with prof.phase("store"):
            _spin(0.02)
            with prof.phase("parse"):
                _spin(0.03)
            _spin(0.01)
        with prof.phase("parse"):
            _spin(0.01)
    wall = time.perf_counter() - t0
    s = prof.seconds
    assert sum(s.values()) == pytest.approx(wall, abs=0.005)
    assert s["parse"] == pytest.approx(0.04, abs=0.01) and s["store"] == pytest.approx(0.03, abs=0.01)
    assert s["other"] == pytest.approx(0.02, abs=0.01)
    assert prof.calls == {"other": 1, "store": 1, "parse": 2}


def test_a_phase_that_raises_is_still_counted():
    prof = Profile()
    with pytest.raises(KeyError):
        with prof.phase("model"):
            raise KeyError("x")
    assert "model" in prof.seconds and prof._stack == []


def test_split_moves_measured_parts_out_and_never_more_than_the_phase():
    prof = Profile()
    prof.seconds = {"model": 10.0}
    prof.split("model", {"prefill": 6.0, "decode": 3.0})
    assert prof.seconds == pytest.approx({"model": 1.0, "prefill": 6.0, "decode": 3.0})
    prof = Profile()
    prof.seconds = {"model": 4.0}
    prof.split("model", {"prefill": 6.0, "decode": 2.0})  # clocks that overlap the phase: scaled down to fit
    assert prof.seconds == pytest.approx({"model": 0.0, "prefill": 3.0, "decode": 1.0})


def test_format_profile_lists_phases_in_pipeline_order_with_shares():
    text = format_profile({"store": 1.0, "prefill": 2.0, "zeta": 1.0})
    lines = text.splitlines()
    assert [ln.split()[0] for ln in lines] == ["phase", "prefill", "store", "zeta", "total"]
    assert "50.0%" in lines[1] and lines[-1].split()[1] == "4.00"
