"""The offline demo: synthesise contrasting pieces, analyse them, write figures and a table.

Needs neither the Emotify data nor the network; `make demo` runs it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from .audio import SAMPLE_RATE, load_audio
from .features import FeatureConfig, track_features, write_table
from .plots import plot_audio, save_figure
from .synth import DEMO_PIECES, write_demo_pieces


def run_demo(out_dir: str | Path, *, console: Console | None = None) -> Path:
    """Write the demo pieces, their paper features and mel/waveform plots under ``out_dir``."""
    console = console or Console()
    out_dir = Path(out_dir)
    paths = write_demo_pieces(out_dir / "audio", duration=12.0)
    config = FeatureConfig(segments=4)
    rows, table = [], Table("piece", "character", "rms", "centroid (Hz)", "tempo (bpm)")
    for path in paths:
        result = track_features(path, config, use_cache=False)
        frame = pd.DataFrame(result.features, columns=config.columns)
        frame.insert(0, "piece", path.stem)
        frame.insert(1, "start", result.starts)
        rows.append(frame)
        y = load_audio(path, sr=SAMPLE_RATE)
        for kind in ("waveform", "mel"):
            save_figure(
                plot_audio(y, SAMPLE_RATE, kind=kind, title=path.stem),
                out_dir / "figures" / f"{path.stem}-{kind}.png",
            )
        table.add_row(
            path.stem,
            DEMO_PIECES.get(path.stem, ""),
            f"{frame['rms'].mean():.3f}",
            f"{frame['spectral_centroid'].mean():.0f}",
            f"{frame['tempo'].mean():.0f}",
        )
    write_table(pd.concat(rows, ignore_index=True), out_dir / "features.parquet")
    console.print(table)
    console.print(f"wrote {out_dir}/ (audio/, figures/, features.parquet)", highlight=False)
    return out_dir
