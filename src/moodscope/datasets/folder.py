"""A user's own music as a dataset: a folder of audio plus a CSV ``path,label``.

Paths in the CSV are relative to the folder (or absolute); labels are any strings. An
optional ``genre`` column is kept for per-genre reports.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from moodscope.datasets.base import Dataset
from moodscope.errors import DatasetError


class FolderDataset(Dataset):
    """Tracks listed in ``labels_csv`` (columns ``path,label[,genre]``) under ``root``.

    ``track_id`` is the path as written in the CSV; ``labels`` are the distinct labels,
    sorted.
    """

    name = "folder"

    def __init__(self, root: str | Path, labels_csv: str | Path):
        self.root = Path(root).expanduser().resolve()
        csv_path = Path(labels_csv).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"{root}: no such folder")
        if not csv_path.is_file():
            raise DatasetError(f"{csv_path}: no such labels file (expected a CSV path,label)")
        rows = self._read(csv_path)
        self.tracks = pd.DataFrame(
            {
                "track_id": [r["path"] for r in rows],
                "genre": [r.get("genre") or "" for r in rows],
                "path": [str(self._resolve(r["path"])) for r in rows],
                "label": [r["label"] for r in rows],
            }
        )
        self.labels = tuple(sorted(self.tracks["label"].unique()))

    def _resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    @staticmethod
    def _read(csv_path: Path) -> list[dict[str, str]]:
        try:
            with csv_path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, skipinitialspace=True)
                header = [h.strip().lower() for h in (reader.fieldnames or [])]
                if "path" not in header or "label" not in header:
                    raise DatasetError(
                        f"{csv_path}: header must name columns 'path' and 'label', got "
                        f"{','.join(header) or 'nothing'}"
                    )
                reader.fieldnames = header
                rows, seen = [], set()
                for line, row in enumerate(reader, start=2):
                    path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                    if not path or not label:
                        raise DatasetError(f"{csv_path}: line {line} has an empty path or label")
                    if path in seen:
                        raise DatasetError(f"{csv_path}: line {line} repeats path {path!r}")
                    seen.add(path)
                    rows.append({**row, "path": path, "label": label})
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{csv_path}: not a UTF-8 text CSV ({exc.reason})") from exc
        except csv.Error as exc:
            raise DatasetError(f"{csv_path}: malformed CSV ({exc})") from exc
        if not rows:
            raise DatasetError(f"{csv_path}: lists no tracks")
        return rows
