"""The offline demo: synthesise pieces of contrasting character, predict their emotions with
the shipped model, print a table and write an HTML report (waveform, mel spectrogram and
emotion timeline per piece). Needs neither the Emotify data nor the network.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from moodscope.audio.decode import SAMPLE_RATE, load_audio
from moodscope.demo.synth import DEMO_PIECES, write_demo_pieces
from moodscope.inference.predictor import load_model, predict
from moodscope.research.plots import plot_audio, plot_timeline
from moodscope.research.report import Report, write_json

DEMO_SECONDS = 15.0


def run_demo(
    out_dir: str | Path, *, model=None, console: Console | None = None, workers: int = 1
) -> Path:
    """Write the pieces under ``out_dir/audio``, predict them, write ``report.html``/``.md``
    and ``predictions.json``; return ``out_dir``."""
    console = console or Console()
    out_dir = Path(out_dir)
    trained = load_model(model)
    paths = write_demo_pieces(out_dir / "audio", duration=DEMO_SECONDS)
    results = predict(paths, trained, workers=workers, use_cache=False)
    table = Table("piece", "character", "top emotion", "distribution (top 3)")
    report = Report("moodscope demo: synthesised pieces")
    report.paragraph(
        f"Four {DEMO_SECONDS:.0f}-s pieces the package synthesised itself, predicted with "
        f"`{trained.classifier.name}` on the `{trained.feature_config.feature_set}` features "
        "(the shipped default model; see its model card for what it is worth). Each timeline "
        "shows the predicted emotion distribution of every window."
    )
    for path, result in zip(paths, results):
        name = path.stem
        if not result.ok:
            table.add_row(name, DEMO_PIECES.get(name, ""), "[red]error[/red]", result.error)
            continue
        top3 = sorted(result.emotions.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            name,
            DEMO_PIECES.get(name, ""),
            result.top_emotion,
            ", ".join(f"{k} {v:.0%}" for k, v in top3),
        )
        y = load_audio(path, sr=SAMPLE_RATE)
        report.heading(f"{name}: {result.top_emotion}")
        report.paragraph(
            f"{DEMO_PIECES.get(name, '')}. Top 3: "
            + ", ".join(f"{k} {v:.0%}" for k, v in top3)
            + "."
        )
        report.figure(
            plot_audio(y, SAMPLE_RATE, kind="waveform", title=name), f"{name}-waveform", "waveform"
        )
        report.figure(
            plot_audio(y, SAMPLE_RATE, kind="mel", title=name), f"{name}-mel", "mel spectrogram"
        )
        names = list(result.emotions)
        report.figure(
            plot_timeline(
                [s.start for s in result.timeline],
                [s.end for s in result.timeline],
                [[s.emotions[n] for n in names] for s in result.timeline],
                names,
                title=name,
            ),
            f"{name}-timeline",
            "emotion timeline",
        )
    report.write(out_dir)
    write_json(out_dir / "predictions.json", [r.to_dict(timeline=True) for r in results])
    console.print(table)
    console.print(
        f"wrote {out_dir}/report.html (and report.md, predictions.json, audio/)", highlight=False
    )
    return out_dir
