"""The paper's figures (audio views, class counts, training curves, confusion matrix) and more.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing
touches global state or needs a display; :func:`save_figure` writes one to PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from moodscope.atomic import atomic_write
from moodscope.errors import ConfigError

__all__ = [
    "HISTORY_METRICS",
    "PLOT_KINDS",
    "TIMELINE_STYLES",
    "plot_audio",
    "plot_class_counts",
    "plot_confusion_matrix",
    "plot_history",
    "plot_reliability",
    "plot_risk_coverage",
    "plot_timeline",
    "save_figure",
]

PLOT_KINDS = ("waveform", "spectrum", "spectrogram", "mel", "mfcc")
"""Views of a signal that :func:`plot_audio` draws (the paper's Figs. 4-6 and the rest)."""

HISTORY_METRICS = ("loss", "accuracy")
"""Metrics :func:`plot_history` draws; history keys are ``train_<metric>``/``val_<metric>``."""

TIMELINE_STYLES = ("area", "heatmap")
"""How :func:`plot_timeline` draws the emotion distribution over time."""

_N_FFT = 2048
_HOP = 512
_N_MFCC = 20
_SPECTRUM_N_FFT = 8192
_WIDE = (10.0, 4.0)


def _new_figure(figsize: tuple[float, float] = _WIDE) -> Figure:
    # Constrained layout keeps colorbars and rotated tick labels inside the canvas.
    return Figure(figsize=figsize, layout="constrained")


def _check_signal(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ConfigError(f"y must be a non-empty mono signal of shape (n,), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ConfigError("y contains NaN or infinite samples")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ConfigError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    return y.astype(np.float32, copy=False)


def _padded(y: np.ndarray, n_fft: int) -> np.ndarray:
    # Clips shorter than one FFT frame still get a (coarse) picture instead of a warning.
    return np.pad(y, (0, n_fft - y.size)) if y.size < n_fft else y


def _librosa(kind: str):
    from moodscope.extras import has_module, require_research

    if not has_module("librosa"):
        require_research(f"a {kind} plot")
    import librosa
    import librosa.display  # noqa: F401 (specshow)

    return librosa


def _mel_db(y: np.ndarray, sr: int, n_mels: int = 128) -> np.ndarray:
    """The 128-band mel power spectrogram in dB re. its peak, floored 80 dB below it
    (librosa's ``melspectrogram`` + ``power_to_db(ref=np.max)``): [n_mels, n_frames]."""
    from moodscope.musicnn.inputs import mel_filterbank

    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)
    padded = np.pad(y, _N_FFT // 2, mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [n_frames, 1 + n_fft / 2]
    mel = mel_filterbank(sr, _N_FFT, n_mels) @ power.T
    db = 10 * np.log10(np.maximum(mel, 1e-10)) - 10 * np.log10(max(mel.max(), 1e-10))
    return np.maximum(db, db.max() - 80.0)


def plot_audio(y: np.ndarray, sr: int, *, kind: str, title: str | None = None) -> Figure:
    """Draw one view of a mono signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Samples, nominally in [-1, 1].
    sr : int
        Sample rate in Hz.
    kind : str
        One of :data:`PLOT_KINDS`:

        ``"waveform"``
            amplitude against time in seconds;
        ``"spectrum"``
            FFT magnitude in dB (relative to the peak) against frequency in Hz, averaged
            over Hann-windowed frames of 8192 samples (the paper's "spectrum analysis via
            FFT");
        ``"spectrogram"``
            STFT log-amplitude in dB, time against a logarithmic frequency axis;
        ``"mel"``
            mel spectrogram (128 bands) in dB;
        ``"mfcc"``
            the first 20 MFCCs as a heat map over time.
    title : str, optional
        Defaults to a description of the view.

    Returns
    -------
    fig : Figure
        One axes for ``waveform``/``spectrum``; the heat maps add a colorbar axes.

    Raises
    ------
    ConfigError
        Unknown ``kind`` (the message lists the valid ones), or a bad signal or rate.
    """
    if kind not in PLOT_KINDS:
        raise ConfigError(f"unknown plot kind {kind!r}; valid kinds: {', '.join(PLOT_KINDS)}")
    y = _check_signal(y, sr)
    fig = _new_figure()
    ax = fig.add_subplot()
    # The waveform and the mel spectrogram (what the demo draws) need numpy alone; the other
    # views librosa (the research extra).
    if kind == "waveform":
        ax.plot(np.arange(len(y)) / sr, y, color="tab:blue", linewidth=0.5)
        ax.set(xlabel="Time (s)", ylabel="Amplitude", xlim=(0, max(len(y) - 1, 1) / sr))
        default = "Waveform"
    elif kind == "mel":
        data = _mel_db(_padded(y, _N_FFT), sr)
        times = np.arange(data.shape[1]) * _HOP / sr
        image = ax.pcolormesh(times, np.arange(len(data)), data, cmap="magma", shading="auto")
        ax.set(xlabel="Time (s)", ylabel="Mel band (of 128)")
        fig.colorbar(image, ax=ax, format="%+2.0f dB")
        default = "Mel spectrogram"
    elif kind == "spectrum":
        librosa = _librosa(kind)

        n_fft = _SPECTRUM_N_FFT
        power = np.abs(librosa.stft(_padded(y, n_fft), n_fft=n_fft, hop_length=n_fft // 4)) ** 2
        magnitude = np.sqrt(power.mean(axis=1))
        db = librosa.amplitude_to_db(magnitude, ref=np.max, top_db=100.0)
        freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
        # Skip the DC bin: the log frequency axis cannot show 0 Hz.
        ax.plot(freqs[1:], db[1:], color="tab:blue", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(max(20.0, freqs[1]), sr / 2)
        ax.set(xlabel="Frequency (Hz)", ylabel="Magnitude (dB re. peak)")
        ax.grid(True, which="both", alpha=0.3)
        default = "Spectrum (FFT)"
    else:
        librosa = _librosa(kind)
        y = _padded(y, _N_FFT)
        if kind == "spectrogram":
            stft = np.abs(librosa.stft(y, n_fft=_N_FFT, hop_length=_HOP))
            data = librosa.amplitude_to_db(stft, ref=np.max)
            y_axis, label, default = "log", "%+2.0f dB", "Spectrogram (STFT, log frequency)"
        else:
            data = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=_N_MFCC, n_fft=_N_FFT, hop_length=_HOP)
            y_axis, label, default = None, "%+.0f", f"MFCC (first {_N_MFCC})"
        image = librosa.display.specshow(
            data, sr=sr, hop_length=_HOP, x_axis="time", y_axis=y_axis, ax=ax, cmap="magma"
        )
        if kind == "mfcc":
            ax.set_ylabel("MFCC index")
        fig.colorbar(image, ax=ax, format=label)
    ax.set_title(title if title is not None else default)
    return fig


def _check_counts(counts: Mapping[str, int], name: str) -> dict[str, int]:
    if len(counts) == 0:
        raise ConfigError(f"{name} needs at least one class")
    checked = {}
    for label, value in counts.items():
        is_count = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if not is_count or not value >= 0 or int(value) != value:
            raise ConfigError(f"{name}[{label!r}] must be a non-negative integer, got {value!r}")
        checked[str(label)] = int(value)
    return checked


def plot_class_counts(
    counts: Mapping[str, int],
    *,
    title: str = "Number of examples per class",
    after: Mapping[str, int] | None = None,
    before_label: str = "before balancing",
    after_label: str = "after balancing (SMOTE)",
) -> Figure:
    """Bar chart of examples per class (the paper's Fig. 7), optionally before/after balancing.

    Parameters
    ----------
    counts : Mapping[str, int]
        Class label -> number of examples; bars keep the mapping's order.
    title : str
        Axes title.
    after : Mapping[str, int], optional
        Counts after resampling, with the same labels as ``counts``; when given, each
        class gets a pair of bars and a legend.
    before_label, after_label : str
        Legend entries for the two series.

    Returns
    -------
    fig : Figure
        One axes; each bar is annotated with its count.
    """
    before = _check_counts(counts, "counts")
    labels = list(before)
    fig = _new_figure((max(6.0, 0.9 * len(labels) + 2.0), 4.5))
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    if after is None:
        bars = ax.bar(x, [before[k] for k in labels], color="tab:blue")
        ax.bar_label(bars, fontsize=8)
    else:
        balanced = _check_counts(after, "after")
        if set(balanced) != set(before):
            raise ConfigError(
                "after must have the same class labels as counts; "
                f"only in counts: {sorted(set(before) - set(balanced))}, "
                f"only in after: {sorted(set(balanced) - set(before))}"
            )
        width = 0.4
        first = ax.bar(x - width / 2, [before[k] for k in labels], width, label=before_label)
        second = ax.bar(x + width / 2, [balanced[k] for k in labels], width, label=after_label)
        ax.bar_label(first, fontsize=7)
        ax.bar_label(second, fontsize=7)
        ax.legend()
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set(ylabel="Number of examples", title=title)
    ax.margins(y=0.12)  # room for the count labels above the tallest bar
    return fig


def plot_history(
    history: Mapping[str, Sequence[float]], *, metric: str, title: str | None = None
) -> Figure:
    """Training and validation curves per epoch (the paper's Figs. 10-11).

    Parameters
    ----------
    history : Mapping[str, Sequence[float]]
        Per-epoch values under keys ``train_<metric>`` and/or ``val_<metric>``
        (e.g. ``train_loss``, ``val_accuracy``); other keys are ignored.
    metric : str
        One of :data:`HISTORY_METRICS`.
    title : str, optional
        Defaults to ``"Training and validation <metric>"``.

    Returns
    -------
    fig : Figure
        One axes; the best validation epoch (lowest loss, highest accuracy) is marked.

    Raises
    ------
    ConfigError
        Unknown ``metric``, neither key present, or an empty series.
    """
    if metric not in HISTORY_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid metrics: {', '.join(HISTORY_METRICS)}")
    series = {
        split: history[f"{split}_{metric}"]
        for split in ("train", "val")
        if f"{split}_{metric}" in history
    }
    if not series:
        raise ConfigError(
            f"history has neither train_{metric} nor val_{metric}; keys: {sorted(history)}"
        )
    fig = _new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    names = {"train": "training", "val": "validation"}
    for split, values in series.items():
        values = np.asarray(values, dtype=float)
        if values.ndim != 1 or values.size == 0:
            raise ConfigError(f"{split}_{metric} must be a non-empty sequence of numbers")
        epochs = np.arange(1, values.size + 1)
        ax.plot(
            epochs,
            values,
            marker="o" if values.size <= 30 else None,
            markersize=3,
            label=names[split],
        )
        if split == "val" and np.isfinite(values).any():
            best = int(np.nanargmin(values) if metric == "loss" else np.nanargmax(values))
            ax.axvline(best + 1, color="grey", linestyle=":", linewidth=1)
            ax.annotate(
                f"best {values[best]:.3f} (epoch {best + 1})",
                (best + 1, values[best]),
                textcoords="offset points",
                xytext=(5, 8),
                fontsize=8,
            )
    ax.set(
        xlabel="Epoch",
        ylabel=metric.capitalize(),
        title=title if title is not None else f"Training and validation {metric}",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def plot_confusion_matrix(
    cm: np.ndarray,
    labels: Sequence[str],
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Confusion matrix heat map with every cell annotated (the paper's Fig. 12).

    Parameters
    ----------
    cm : np.ndarray [shape=(n_classes, n_classes)]
        Counts; rows are true classes, columns predicted classes (scikit-learn's layout).
    labels : Sequence[str]
        Class names, ``n_classes`` of them, in row order.
    normalize : bool
        Colour by each row's share (recall per class) and annotate share and count;
        otherwise colour and annotate raw counts. Rows without examples show 0.
    title : str, optional
        Defaults to ``"Confusion matrix"`` (plus "(row-normalised)").

    Returns
    -------
    fig : Figure
        Two axes: the matrix and its colorbar.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ConfigError(f"cm must be a square (n_classes, n_classes) array, got {cm.shape}")
    if len(labels) != cm.shape[0]:
        raise ConfigError(f"labels has {len(labels)} names for a {cm.shape[0]}-class matrix")
    if not np.all(np.isfinite(cm)) or np.any(cm < 0):
        raise ConfigError("cm must hold finite non-negative counts")
    counts = cm.astype(float)
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        vmax = 1.0
    else:
        shown = counts
        vmax = max(float(counts.max()), 1.0)
    n = cm.shape[0]
    side = max(5.0, 0.75 * n + 2.5)
    fig = _new_figure((side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, label="Share of true class" if normalize else "Count")
    fontsize = 9 if n <= 6 else 7
    for i in range(n):
        for j in range(n):
            count = counts[i, j]
            count_text = f"{count:.0f}" if count == int(count) else f"{count:.2f}"
            text = f"{shown[i, j]:.0%}\n({count_text})" if normalize else count_text
            # Dark cells need light text to stay legible.
            color = "white" if shown[i, j] > 0.5 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    ticks = np.arange(n)
    ax.set_xticks(ticks, list(labels), rotation=45, ha="right")
    ax.set_yticks(ticks, list(labels))
    default = "Confusion matrix" + (" (row-normalised)" if normalize else "")
    ax.set(xlabel="Predicted", ylabel="True", title=title if title is not None else default)
    return fig


def plot_timeline(
    starts: Sequence[float] | np.ndarray,
    ends: Sequence[float] | np.ndarray,
    probabilities: np.ndarray,
    emotions: Sequence[str],
    *,
    title: str | None = None,
    style: str = "area",
) -> Figure:
    """Emotion distribution over the segments of one track.

    Parameters
    ----------
    starts, ends : array-like [shape=(n_segments,)]
        Segment start and end times in seconds, in time order; ``ends > starts``.
        Segments may overlap (sliding windows).
    probabilities : np.ndarray [shape=(n_segments, n_emotions)]
        Non-negative scores per segment and emotion (softmax or sigmoid outputs).
    emotions : Sequence[str]
        The ``n_emotions`` names, in column order.
    title : str, optional
        Defaults to ``"Emotions over time"``.
    style : str
        ``"area"``: stacked areas of each segment's scores scaled to sum to 1, drawn at
        segment midpoints and held flat out to the first start and the last end;
        ``"heatmap"``: the raw scores, emotions against time, each segment's column
        spanning halfway to its neighbours' midpoints.

    Returns
    -------
    fig : Figure
        One axes for ``"area"`` (legend outside on the right); two with the heat map's
        colorbar.
    """
    if style not in TIMELINE_STYLES:
        raise ConfigError(f"unknown style {style!r}; valid styles: {', '.join(TIMELINE_STYLES)}")
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    probs = np.asarray(probabilities, dtype=float)
    n = starts.size
    if starts.ndim != 1 or ends.shape != starts.shape or n == 0:
        raise ConfigError(
            f"starts and ends must be equal-length 1-D arrays of at least one time, "
            f"got shapes {starts.shape} and {ends.shape}"
        )
    if probs.shape != (n, len(emotions)):
        raise ConfigError(
            f"probabilities must have shape (n_segments, n_emotions) = ({n}, {len(emotions)}), "
            f"got {probs.shape}"
        )
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(ends)) and np.all(ends > starts)):
        raise ConfigError("every segment needs finite times with end > start")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ConfigError("probabilities must be finite and non-negative")
    mids = (starts + ends) / 2
    if np.any(np.diff(mids) <= 0):
        raise ConfigError("segments must be in time order")

    fig = _new_figure((10.0, 4.5))
    ax = fig.add_subplot()
    if style == "area":
        totals = probs.sum(axis=1, keepdims=True)
        shares = np.divide(probs, totals, out=np.zeros_like(probs), where=totals > 0)
        x = np.concatenate([[starts[0]], mids, [ends[-1]]])
        stacked = np.vstack([shares[:1], shares, shares[-1:]]).T
        colors = _emotion_colors(len(emotions))
        ax.stackplot(x, stacked, labels=list(emotions), colors=colors, alpha=0.9)
        ax.set(xlim=(x[0], x[-1]), ylim=(0.0, 1.0), ylabel="Share of segment's scores")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    else:
        inner = (mids[:-1] + mids[1:]) / 2
        edges = np.concatenate([[starts[0]], inner, [ends[-1]]])
        image = ax.pcolormesh(
            edges,
            np.arange(len(emotions) + 1),
            probs.T,
            cmap="viridis",
            vmin=0.0,
            vmax=max(1.0, float(probs.max())),
        )
        ax.set_yticks(np.arange(len(emotions)) + 0.5, list(emotions))
        ax.invert_yaxis()  # first emotion at the top, like a table
        fig.colorbar(image, ax=ax, label="Score")
    ax.set(xlabel="Time (s)", title=title if title is not None else "Emotions over time")
    return fig


def _emotion_colors(n: int) -> list[tuple[float, float, float, float]]:
    # tab10 gives ten clearly distinct hues, enough for the GEMS-9 set.
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Write ``fig`` to a PNG file atomically, creating parent folders.

    The image goes to a temporary file next to ``path`` and is renamed into place, so
    a crash never leaves a half-written PNG under the final name.

    Parameters
    ----------
    fig : Figure
    path : str or Path
        Destination; its suffix must be ``.png``.
    dpi : int
        Resolution in dots per inch.

    Returns
    -------
    path : Path
        The file written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"save_figure writes PNG; the path must end in .png, got {path}")
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    return path


def plot_risk_coverage(held_out: dict, *, title: str | None = None) -> Figure:
    """Accuracy of the most confident tracks against the share kept (the risk-coverage
    curve), from :func:`moodscope.yardstick.confidence_metrics`' ``risk_coverage``; the
    table's coverages are marked, and all tracks' accuracy drawn as a line."""
    rc = held_out["risk_coverage"]
    curve = np.asarray(rc["curve"], dtype=float)
    if curve.size == 0:
        raise ConfigError("risk-coverage curve is empty")
    coverage = np.arange(1, len(curve) + 1) / len(curve)
    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    ax.plot(coverage, curve, color="#0072B2", label="top emotion")
    for key, colour, name in (
        ("top2_accuracy", "#E69F00", "top 2"),
        ("top3_accuracy", "#009E73", "top 3"),
    ):
        points = [(r["coverage"], r[key]) for r in rc["table"] if key in r]
        if points:
            ax.plot(*zip(*points), "o--", color=colour, label=name)
    table = rc["table"]
    ax.plot([r["coverage"] for r in table], [r["accuracy"] for r in table], "o", color="#0072B2")
    ax.axhline(curve[-1], color="grey", lw=0.8, ls=":", label="all tracks")
    ax.set(
        xlabel="Share of tracks answered (most confident first)",
        ylabel="Accuracy",
        xlim=(0, 1.02),
        ylim=(0, 1),
        title=title or "Risk-coverage (held-out tracks)",
    )
    ax.legend(loc="upper right")
    return fig


def plot_reliability(calibration: dict, *, title: str | None = None) -> Figure:
    """The reliability diagram: accuracy against mean confidence per confidence bin (from
    :func:`moodscope.metrics.calibration_error`), marker area by tracks, the diagonal for
    perfect calibration."""
    bins = calibration["bins"]
    if not bins:
        raise ConfigError("reliability diagram needs at least one bin")
    fig = _new_figure((4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    conf = [b["mean_confidence"] for b in bins]
    acc = [b["accuracy"] for b in bins]
    sizes = [20 + 4 * b["n_tracks"] for b in bins]
    ax.plot(conf, acc, color="#0072B2", lw=1)
    ax.scatter(conf, acc, s=sizes, color="#0072B2", alpha=0.7)
    for b in bins:
        ax.annotate(str(b["n_tracks"]), (b["mean_confidence"], b["accuracy"]),
                    textcoords="offset points", xytext=(6, -10), fontsize=7)  # fmt: skip
    ax.set(xlabel="Confidence", ylabel="Accuracy", xlim=(0, 1), ylim=(0, 1),
           title=title or f"Reliability (ECE {calibration['ece']:.3f})")  # fmt: skip
    return fig
