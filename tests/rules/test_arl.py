"""The ARL benchmark's textbook side: its Markov chains reproduce the published tables, and
its vectorized charts signal where ``rules.stats`` does (``bench/stats.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.stats import CLASSIC, DEFAULT_CUSUM, DEFAULT_EWMA, check_engine, cusum_arl, ewma_arl


@pytest.mark.parametrize(
    ("shift", "published"), [(0.0, 465.0), (1.0, 10.4), (2.0, 4.01)]
)  # Montgomery, tabular CUSUM k 0.5, h 5
def test_brook_evans_reproduces_the_published_cusum_table(shift: float, published: float) -> None:
    assert cusum_arl(0.5, 5.0, shift, None) == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize(
    ("shift", "published"), [(0.0, 500.0), (1.0, 10.3), (2.0, 4.36)]
)  # Lucas and Saccucci, EWMA lambda 0.1, L 2.814
def test_lucas_saccucci_reproduces_the_published_ewma_table(shift: float, published: float) -> None:
    assert ewma_arl(0.1, 2.814, shift, None) == pytest.approx(published, rel=0.01)


def test_the_clip_barely_moves_the_in_control_arl_of_the_default() -> None:
    clipped, plain = cusum_arl(0.5, 12.0, 0.0, 4.0), cusum_arl(0.5, 12.0, 0.0, None)
    assert clipped == pytest.approx(plain, rel=0.02)


def test_the_vectorized_charts_signal_on_the_rules_cycles() -> None:
    rng = np.random.default_rng(1)
    for design in (DEFAULT_CUSUM, DEFAULT_EWMA, *CLASSIC):
        assert check_engine(design, rng, cycles=5000) > 0
