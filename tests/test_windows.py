from __future__ import annotations

import numpy as np
import pytest

from indexer.windows import WindowSpec, iter_windows, repeat_pad, split_windows, window_bounds

SR = 1000
SPEC = WindowSpec(window_s=10.0, hop_s=5.0)


def test_short_signal_is_one_unpadded_window() -> None:
    assert window_bounds(3_500, SR, SPEC) == [(0, 3_500)]
    assert window_bounds(10_000, SR, SPEC) == [(0, 10_000)]


def test_long_signal_gets_hop_windows_and_an_end_aligned_tail() -> None:
    assert window_bounds(20_000, SR, SPEC) == [(0, 10_000), (5_000, 15_000), (10_000, 20_000)]
    assert window_bounds(23_000, SR, SPEC) == [
        (0, 10_000),
        (5_000, 15_000),
        (10_000, 20_000),
        (13_000, 23_000),
    ]
    assert window_bounds(10_001, SR, SPEC) == [(0, 10_000), (1, 10_001)]


@pytest.mark.parametrize("n", [1, 999, 10_000, 10_001, 14_999, 15_000, 37_123])
@pytest.mark.parametrize("block", [1, 777, 10_000, 50_000])
def test_streamed_windows_equal_in_memory_windows(n: int, block: int) -> None:
    if block == 1 and n > 15_000:
        pytest.skip("slow and redundant")
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = split_windows(x, SR, SPEC)
    streamed = list(iter_windows((x[i : i + block] for i in range(0, n, block)), SR, SPEC))
    assert [(w.start_s, w.end_s) for w in streamed] == [(w.start_s, w.end_s) for w in expected]
    for a, b in zip(streamed, expected, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)
    covered = np.zeros(n, dtype=bool)
    for w in expected:
        covered[round(w.start_s * SR) : round(w.end_s * SR)] = True
    assert covered.all(), "every sample belongs to some window"


def test_repeat_pad_matches_laion() -> None:
    x = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 10), [1, 2, 3, 1, 2, 3, 1, 2, 3, 0])
    np.testing.assert_array_equal(repeat_pad(x, 3), x)
    assert repeat_pad(np.ones(7, dtype=np.float32), 10).tolist() == [1] * 7 + [0] * 3


def test_invalid_spec() -> None:
    with pytest.raises(ValueError):
        WindowSpec(window_s=5, hop_s=6)
