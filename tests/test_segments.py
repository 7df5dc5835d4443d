"""Equal segments and fixed windows: coverage, lengths, times and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moodscope import AudioError, ConfigError
from moodscope.features.segments import equal_segments, fixed_windows, segment_track


@given(n_samples=st.integers(22050 * 10, 22050 * 200), n=st.integers(1, 20))
def test_equal_segments_cover_track(n_samples, n):
    segments = equal_segments(n_samples, 22050, n)
    assert len(segments) == n
    assert segments[0].start_sample == 0 and segments[-1].end_sample == n_samples
    for a, b in zip(segments, segments[1:]):
        assert a.end_sample == b.start_sample
    lengths = {s.end_sample - s.start_sample for s in segments}
    assert max(lengths) - min(lengths) <= 1


def test_paper_segments_of_a_minute():
    segments = equal_segments(60 * 22050, 22050, 20)
    assert [s.index for s in segments] == list(range(20))
    assert segments[1].start == pytest.approx(3.0) and segments[1].end == pytest.approx(6.0)
    assert all(s.duration == pytest.approx(3.0) for s in segments)


def test_segment_slices_samples():
    y = np.arange(100.0)
    seg = equal_segments(100, 10, 4)[2]
    np.testing.assert_array_equal(seg.slice(y), y[50:75])


def test_fixed_windows_with_hop():
    windows = fixed_windows(10 * 1000, 1000, length=3.0, hop=1.5)
    assert [w.start for w in windows] == [0.0, 1.5, 3.0, 4.5, 6.0]
    assert all(w.duration == 3.0 for w in windows)


def test_fixed_windows_drop_partial_tail():
    windows = fixed_windows(10 * 1000, 1000, length=3.0)
    assert [(w.start, w.end) for w in windows] == [(0, 3), (3, 6), (6, 9)]


def test_too_short_for_segments():
    with pytest.raises(AudioError, match="20 segments need at least 10.00 s"):
        equal_segments(22050 * 5, 22050, 20)
    with pytest.raises(AudioError, match="window"):
        fixed_windows(22050, 22050, length=3.0)


@pytest.mark.parametrize(
    "kwargs", [{"n": 0}, {"n": 2, "length": 3.0}, {}, {"length": 0.1}, {"length": 3.0, "hop": 0}]
)
def test_bad_segment_config(kwargs):
    with pytest.raises(ConfigError):
        segment_track(np.zeros(22050 * 60), 22050, **kwargs)
