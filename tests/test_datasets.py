"""Emotify and folder datasets: the id -> file mapping, labels, validation, bad CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import chord_signal
from moodscope import DatasetError, EmotifyDataset, FolderDataset
from moodscope.datasets import EMOTIONS, load_dataset, track_path

HEADER = (
    "track id, genre, amazement, solemnity, tenderness, nostalgia, calmness, power, "
    "joyful_activation, tension, sadness, mood, liked, disliked, age, gender, mother tongue"
)


@pytest.mark.parametrize(
    "track_id, genre, rel",
    [
        (1, "classical", "classical/1.mp3"),
        (100, "classical", "classical/100.mp3"),
        (101, "rock", "rock/1.mp3"),
        (200, "rock", "rock/100.mp3"),
        (201, "electronic", "electronic/1.mp3"),
        (301, "pop", "pop/1.mp3"),
    ],
)
def test_track_path_mapping(track_id, genre, rel):
    assert track_path("/r", track_id, genre) == Path("/r/emotifymusic") / rel


def test_track_path_rejects_wrong_genre():
    with pytest.raises(DatasetError, match="does not belong"):
        track_path("/r", 101, "classical")


def _tiny_emotify(root: Path, rows: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return root


def test_labels_shares_and_tie_break(tmp_path):
    # Track 105: tenderness and calmness tie (2 of 2) -> tenderness, the earlier column.
    root = _tiny_emotify(
        tmp_path / "e",
        [
            "105,rock,0,0,1,0,1,0,0,0,0,3,1,0,30,1,Dutch",
            "105,rock,0,0,1,0,1,1,0,0,0,3,0,1,31,0,Dutch",
            "7,classical,0,0,0,0,1,0,0,0,0,3,1,0,30,1,English",
        ],
    )
    d = EmotifyDataset(root)
    t = d.tracks.set_index("track_id")
    assert list(t.index) == ["7", "105"]
    assert t.loc["105", "label"] == "tenderness"
    assert t.loc["105", "n_annotations"] == 2
    assert t.loc["105", "power"] == pytest.approx(0.5)
    assert t.loc["105", "liked"] == pytest.approx(0.5)
    assert t.loc["105", "path"].endswith("emotifymusic/rock/5.mp3")
    assert d.shares().shape == (2, 9)
    report = d.validate()
    assert len(report.missing) == 2 and not report.ok


@pytest.mark.parametrize(
    "body, match",
    [
        ("a,b\n1,2\n", "missing column"),
        (HEADER + "\n5,classical,x,0,0,0,0,0,0,0,0,3,1,0,1,1,NL\n", "line 2"),
        (
            HEADER
            + "\n5,classical,0,0,0,0,0,0,0,0,0,3,1,0,1,1,NL"
            + "\n5,rock,0,0,0,0,0,0,0,0,0,3,1,0,1,1,NL\n",
            "two genres",
        ),
        ("", "not a readable CSV"),
    ],
)
def test_bad_annotation_csv(tmp_path, body, match):
    root = tmp_path / "e"
    root.mkdir()
    (root / "data.csv").write_text(body)
    with pytest.raises(DatasetError, match=match) as info:
        EmotifyDataset(root)
    assert "data.csv" in str(info.value)


def test_missing_folder_and_csv(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        EmotifyDataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match="data.csv"):
        EmotifyDataset(tmp_path)


@pytest.mark.data
def test_dev_copy(emotify_dir):
    d = EmotifyDataset(emotify_dir)
    assert len(d) == 320
    assert d.tracks.groupby("genre").size().to_dict() == {
        "classical": 80,
        "electronic": 80,
        "pop": 80,
        "rock": 80,
    }
    # Dominant emotions recomputed independently from the raw rows.
    raw = pd.read_csv(emotify_dir / "data.csv", skipinitialspace=True)
    means = raw.groupby("track id")[list(EMOTIONS)].mean().to_numpy()
    expected = pd.Series(np.asarray(EMOTIONS)[means.argmax(axis=1)]).value_counts().to_dict()
    assert d.tracks["label"].value_counts().to_dict() == expected
    assert expected["calmness"] == 79 and expected["amazement"] == 2
    # Every id maps to an existing file in its own genre's folder, never by folder order.
    assert all(Path(p).is_file() for p in d.tracks["path"])
    rock = d.tracks[d.tracks.genre == "rock"]
    assert all("/rock/" in p for p in rock["path"])
    row = d.tracks.set_index("track_id").loc["102"]
    assert row["path"].endswith("emotifymusic/rock/2.mp3")
    assert d.validate(decode=True).ok


@pytest.mark.data
def test_dev_copy_differs_from_release_checksums(emotify_subset):
    # The dev copy is re-encoded, so every file must be flagged against the release MD5s.
    report = EmotifyDataset(emotify_subset).validate(decode=False, checksums=True)
    assert len(report.bad_checksum) == 8


def _labelled_folder(tmp_path: Path, csv_text: str) -> tuple[Path, Path]:
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", chord_signal(1.0), 22050)
    sf.write(root / "sub" / "b.flac", chord_signal(1.0, seed=1), 22050)
    (root / "broken.mp3").write_text("not audio")
    labels = tmp_path / "labels.csv"
    labels.write_text(csv_text)
    return root, labels


def test_folder_dataset(tmp_path):
    root, labels = _labelled_folder(
        tmp_path, "path,label\na.wav,happy\nsub/b.flac,sad\nbroken.mp3,sad\nmissing.wav,happy\n"
    )
    d = load_dataset(root, labels)
    assert isinstance(d, FolderDataset)
    assert d.labels == ("happy", "sad")
    assert list(d.tracks.columns[:4]) == ["track_id", "genre", "path", "label"]
    assert d.class_counts() == {"happy": 2, "sad": 2}
    np.testing.assert_array_equal(d.shares()[0], [1, 0])
    report = d.validate()
    assert [Path(p).name for p in report.missing] == ["missing.wav"]
    assert [Path(p).name for p, _ in report.unreadable] == ["broken.mp3"]


@pytest.mark.parametrize(
    "csv_text, match",
    [
        ("file,mood\na.wav,x\n", "header must name"),
        ("path,label\na.wav,\n", "line 2 has an empty"),
        ("path,label\na.wav,x\na.wav,y\n", "line 3 repeats"),
        ("path,label\n", "lists no tracks"),
    ],
)
def test_folder_dataset_bad_csv(tmp_path, csv_text, match):
    root, labels = _labelled_folder(tmp_path, csv_text)
    with pytest.raises(DatasetError, match=match) as info:
        FolderDataset(root, labels)
    assert str(labels) in str(info.value)


def test_folder_dataset_binary_csv(tmp_path):
    root, labels = _labelled_folder(tmp_path, "")
    labels.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(DatasetError, match="UTF-8|header"):
        FolderDataset(root, labels)
