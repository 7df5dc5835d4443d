"""Tests for moodscope.research.plots: every figure builds; save_figure writes a PNG atomically."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from moodscope.demo import synth
from moodscope.errors import ConfigError
from moodscope.research.plots import (
    PLOT_KINDS,
    plot_audio,
    plot_class_counts,
    plot_confusion_matrix,
    plot_history,
    plot_timeline,
    save_figure,
)

SR = 22050
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EMOTIONS = ["amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power",
            "joyful_activation", "tension", "sadness"]  # fmt: skip


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    # Two seconds of a C major chord with a decaying envelope: enough for every view.
    t = np.arange(2 * SR) / SR
    y = synth.chord((261.63, 329.63, 392.0), 2.0, sr=SR, amplitude=0.9) * np.exp(-t)
    return y.astype(np.float32)


def _has_content(fig: Figure) -> bool:
    fig.set_dpi(40)  # a coarse render is enough to see that something was drawn
    canvas = FigureCanvasAgg(fig)  # render off-screen, as save_figure does
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    return pixels.size > 0 and len(np.unique(pixels.reshape(-1, 4), axis=0)) > 10


@pytest.mark.parametrize("kind", PLOT_KINDS)
def test_plot_audio_every_kind(signal, kind) -> None:
    fig = plot_audio(signal, SR, kind=kind, title=f"chord {kind}")
    assert isinstance(fig, Figure)
    heat_map = kind in ("spectrogram", "mel", "mfcc")
    assert len(fig.axes) == (2 if heat_map else 1)  # heat maps carry a colorbar
    assert fig.axes[0].get_title() == f"chord {kind}"
    if heat_map:
        assert fig.axes[0].collections, "no image drawn"
    else:
        assert fig.axes[0].lines or fig.axes[0].collections, "nothing drawn"
    assert _has_content(fig)


def test_plot_audio_mfcc_has_twenty_rows(signal) -> None:
    mesh = plot_audio(signal, SR, kind="mfcc").axes[0].collections[0]
    assert mesh.get_array().reshape(20, -1).shape[0] == 20


def test_plot_audio_handles_clip_shorter_than_fft(signal) -> None:
    for kind in PLOT_KINDS:
        assert isinstance(plot_audio(signal[:500], SR, kind=kind), Figure)


def test_plot_audio_rejects_unknown_kind(signal) -> None:
    with pytest.raises(ConfigError) as info:
        plot_audio(signal, SR, kind="chromagram")
    for kind in PLOT_KINDS:
        assert kind in str(info.value)


@pytest.mark.parametrize(
    "y",
    [np.zeros(0, np.float32), np.zeros((2, 100), np.float32), np.array([0.0, np.nan])],
)
def test_plot_audio_rejects_bad_signal(y) -> None:
    with pytest.raises(ConfigError):
        plot_audio(y, SR, kind="waveform")


def test_plot_class_counts_single_and_grouped() -> None:
    counts = {e: 10 * (i + 1) for i, e in enumerate(EMOTIONS)}
    fig = plot_class_counts(counts, title="Fig. 7")
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_title() == "Fig. 7"
    assert [p.get_height() for p in ax.patches] == list(counts.values())
    assert [t.get_text() for t in ax.get_xticklabels()] == EMOTIONS

    fig = plot_class_counts(counts, after={e: 90 for e in EMOTIONS})
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(EMOTIONS)
    assert ax.get_legend() is not None
    assert _has_content(fig)


@pytest.mark.parametrize(
    ("counts", "after"),
    [({}, None), ({"a": -1}, None), ({"a": 1, "b": 2}, {"a": 3}), ({"a": 1.5}, None)],
)
def test_plot_class_counts_rejects_bad_input(counts, after) -> None:
    with pytest.raises(ConfigError):
        plot_class_counts(counts, after=after)


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_plot_history_draws_train_and_val(metric) -> None:
    history = {
        "train_loss": [1.0, 0.7, 0.5, 0.4],
        "val_loss": [1.1, 0.8, 0.7, 0.75],
        "train_accuracy": [0.3, 0.5, 0.6, 0.7],
        "val_accuracy": [0.25, 0.4, 0.5, 0.45],
    }
    fig = plot_history(history, metric=metric)
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert [line.get_label() for line in ax.lines[:2]] == ["training", "validation"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), history[f"val_{metric}"])
    assert metric in ax.get_title()
    assert _has_content(fig)


def test_plot_history_with_only_validation() -> None:
    fig = plot_history({"val_loss": [0.5]}, metric="loss")
    assert fig.axes[0].lines[0].get_label() == "validation"


@pytest.mark.parametrize(
    ("history", "metric"),
    [
        ({"train_loss": [1.0]}, "f1"),
        ({"train_loss": [1.0]}, "accuracy"),
        ({"val_loss": []}, "loss"),
    ],
)
def test_plot_history_rejects_bad_input(history, metric) -> None:
    with pytest.raises(ConfigError):
        plot_history(history, metric=metric)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix_annotates_every_cell(normalize) -> None:
    cm = np.array([[8, 2, 0], [1, 5, 4], [0, 0, 0]])
    fig = plot_confusion_matrix(cm, ["a", "b", "c"], normalize=normalize, title="Fig. 12")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # matrix + colorbar
    assert ax.get_title() == "Fig. 12"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9
    if normalize:
        assert texts[0] == "80%\n(8)"
        assert texts[8] == "0%\n(0)"  # an empty row shows 0, not NaN
        np.testing.assert_allclose(ax.images[0].get_array()[1], [0.1, 0.5, 0.4])
    else:
        assert texts[:3] == ["8", "2", "0"]
    assert _has_content(fig)


@pytest.mark.parametrize(
    ("cm", "labels"),
    [(np.ones((2, 3)), ["a", "b"]), (np.ones((2, 2)), ["a"]), (-np.ones((2, 2)), ["a", "b"])],
)
def test_plot_confusion_matrix_rejects_bad_input(cm, labels) -> None:
    with pytest.raises(ConfigError):
        plot_confusion_matrix(cm, labels)


@pytest.mark.parametrize(("style", "n_axes"), [("area", 1), ("heatmap", 2)])
def test_plot_timeline(style, n_axes) -> None:
    starts = np.arange(0.0, 20.0, 2.5)
    ends = starts + 5.0  # overlapping windows
    probs = np.random.default_rng(0).dirichlet(np.ones(len(EMOTIONS)), size=starts.size)
    fig = plot_timeline(starts, ends, probs, EMOTIONS, title="track", style=style)
    ax = fig.axes[0]
    assert len(fig.axes) == n_axes
    assert ax.get_title() == "track"
    if style == "area":
        assert len(ax.collections) == len(EMOTIONS)
        assert ax.get_xlim() == (0.0, 22.5)
    assert _has_content(fig)


def test_plot_timeline_single_segment() -> None:
    probs = np.full((1, 3), 1 / 3)
    for style in ("area", "heatmap"):
        assert isinstance(plot_timeline([0.0], [4.0], probs, ["a", "b", "c"], style=style), Figure)


@pytest.mark.parametrize(
    ("starts", "ends", "probs"),
    [
        ([0.0, 1.0], [1.0, 2.0], np.ones((2, 2))),  # wrong number of emotions
        ([0.0, 1.0], [1.0, 0.5], np.ones((2, 3))),  # end before start
        ([1.0, 0.0], [2.0, 1.0], np.ones((2, 3))),  # out of order
        ([0.0], [1.0], -np.ones((1, 3))),  # negative score
        ([], [], np.ones((0, 3))),
    ],
)
def test_plot_timeline_rejects_bad_input(starts, ends, probs) -> None:
    with pytest.raises(ConfigError):
        plot_timeline(starts, ends, probs, ["a", "b", "c"])


def test_plot_timeline_rejects_unknown_style() -> None:
    with pytest.raises(ConfigError, match="heatmap"):
        plot_timeline([0.0], [1.0], np.ones((1, 3)), ["a", "b", "c"], style="pie")


def test_save_figure_writes_png_atomically(tmp_path, signal) -> None:
    target = tmp_path / "figures" / "deep" / "waveform.png"
    written = save_figure(plot_audio(signal, SR, kind="waveform"), target)
    assert written == target
    data = target.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert [p.name for p in target.parent.iterdir()] == ["waveform.png"]  # no temp left
    # Overwriting replaces the file in one step, again leaving nothing else behind.
    save_figure(plot_class_counts({"a": 1}), target)
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in target.parent.iterdir()] == ["waveform.png"]


def test_save_figure_cleans_up_after_failure(tmp_path) -> None:
    class Broken(Figure):
        def savefig(self, *args, **kwargs):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        save_figure(Broken(), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_save_figure_requires_png_suffix(tmp_path) -> None:
    with pytest.raises(ConfigError, match=".png"):
        save_figure(Figure(), tmp_path / "figure.pdf")
