"""Level, channels and codec do not decide the mood: real dev tracks through ffmpeg."""

from __future__ import annotations

import pytest

from moodscope.research.invariance import (
    VARIANTS,
    invariance_markdown,
    invariance_table,
    pick_tracks,
)

CHECKED = ("-6 dB", "+3 dB, limited", "stereo upmix", "MP3 128 kbps")
MAX_SHIFT = 0.05
"""The most a track's confidence may move under one of :data:`CHECKED` (the shipped model
moves it 0.0x on average: see the model card's invariance table)."""


def test_the_variants_are_the_issues():
    assert {"-12 dB", "-6 dB", "-3 dB", "+3 dB, limited", "22.05 kHz WAV", "48 kHz WAV",
            "MP3 128 kbps", "Opus 64 kbps", "stereo upmix"} == set(VARIANTS)  # fmt: skip


@pytest.mark.data
@pytest.mark.slow
def test_gain_upmix_and_mp3_keep_the_top_emotion(emotify_dir):
    from moodscope.datasets import EmotifyDataset

    paths = pick_tracks(EmotifyDataset(emotify_dir).tracks, 3, seed=2)
    table = invariance_table(paths, {"shipped": None}, CHECKED, seconds=15.0)
    print(invariance_markdown(table))
    for variant, row in table["shipped"].items():
        assert row["tracks"] == 3, variant
        assert row["same_top"] == 3, variant
        assert row["max_shift"] <= MAX_SHIFT, variant
