"""Erlang B / C against textbook values (voicebot/bench/erlang.py, used by docs/capacity.md)."""

from __future__ import annotations

import math

import pytest

from voicebot.bench.erlang import (
    channels_for_blocking,
    erlang_b,
    erlang_c,
    mean_wait,
    offered_erlangs,
    servers_for_wait,
    wait_exceeds,
)


def test_erlang_b_matches_textbook_values():
    assert erlang_b(10, 15) == pytest.approx(0.0365, abs=5e-4)
    assert erlang_b(1, 1) == pytest.approx(0.5)
    assert erlang_b(2, 2) == pytest.approx(0.4)          # (2^2/2!) / (1 + 2 + 2)
    assert erlang_b(5, 0) == 1.0
    assert erlang_b(0, 3) == 0.0


def test_channels_for_one_percent_match_the_erlang_b_table():
    # Standard tables at 1 % blocking: 10 E -> 18 lines, 20 E -> 30 lines, 40 E -> 53 lines.
    assert channels_for_blocking(10, 0.01) == 18
    assert channels_for_blocking(20, 0.01) == 30
    assert channels_for_blocking(40, 0.01) == 53
    n = channels_for_blocking(95, 0.01)
    assert erlang_b(95, n) <= 0.01 < erlang_b(95, n - 1)


def test_erlang_c_matches_textbook_values():
    assert erlang_c(2, 3) == pytest.approx(4 / 9)         # 3 servers, 2 Erlang
    assert erlang_c(1, 1) == 1.0                          # saturated
    assert erlang_c(0.5, 1) == pytest.approx(0.5)         # M/M/1: P(wait) = rho


def test_waiting_time_of_mm1_and_mmc():
    # M/M/1 with rho 0.5 and 1 s service: mean wait rho/(1-rho) s = 1 s; P(W > t) = rho*e^{-(1-rho)t}.
    assert mean_wait(0.5, 1, 1.0) == pytest.approx(1.0)
    assert wait_exceeds(0.5, 1, 1.0, 2.0) == pytest.approx(0.5 * math.exp(-1.0))
    assert mean_wait(3, 3, 1.0) == math.inf
    n = servers_for_wait(8, 0.5, 1.0, 0.05)
    assert wait_exceeds(8, n, 0.5, 1.0) <= 0.05 < wait_exceeds(8, n - 1, 0.5, 1.0)


def test_offered_traffic():
    assert offered_erlangs(580, 40) == pytest.approx(6.444, abs=1e-3)
    assert offered_erlangs(3600, 1) == pytest.approx(1.0)
