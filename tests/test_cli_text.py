"""Text is text: paths and messages reach the terminal exactly (no console markup), control
characters escaped; option values are checked while parsing (exit 2)."""

from __future__ import annotations

import pytest

from conftest import chord_signal
from moodscope.cli import main


def run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.fixture
def wide(monkeypatch):
    """One table row per file, so that paths are not wrapped, whatever the terminal."""
    from moodscope.cli import console

    for c in (console.out, console.console):
        monkeypatch.setattr(c, "width", 250)


def test_brackets_in_paths_are_shown_as_they_are(write_audio, tmp_path, monkeypatch, capsys, wide):
    album = tmp_path / "Album [remastered]"
    album.mkdir()
    write_audio("Album [remastered]/01.wav", chord_signal(4.0))
    (tmp_path / "Live [").mkdir()
    odd = write_audio("Live [/[bold]01[red].wav", chord_signal(4.0))  # a path holding "[/"
    (tmp_path / "bad[").mkdir()
    bad = tmp_path / "bad[" / "red] [link=x]t.mp3"  # holds "[/", "[link=...]"
    bad.write_text("this is text, not audio")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["predict", album, odd, bad, "--workers", "1"], capsys)
    assert code == 1  # the text file failed; the run went on and printed its table
    assert "Album [remastered]/01.wav" in out and "Live [/[bold]01[red].wav" in out
    assert f"failed {bad}: " in err and "Traceback" not in err


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    name = tmp_path / "two\nlines \x1b[31mred\x1b[0m.mp3"
    name.write_text("not audio either")
    code, _, err = run(["predict", name, "--workers", "1", "--format", "json"], capsys)
    assert code == 1
    assert "\x1b" not in err and "two\\nlines \\x1b[31mred\\x1b[0m.mp3" in err
    assert all("two" not in line or "lines" in line for line in err.splitlines())


def test_a_name_that_is_not_utf8_is_one_line(tmp_path, capsys):
    raw = bytes(tmp_path) + b"/caf\xe9.mp3"
    with open(raw, "wb") as f:
        f.write(b"plain text")
    path = raw.decode("utf-8", "surrogateescape")
    code, _, err = run(["predict", path, "--workers", "1", "--format", "json"], capsys)
    assert code == 1 and "caf\\udce9.mp3" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "option",
    [
        ["--workers", "0"],
        ["--workers", "-3"],
        ["--scheduler", "bogus://x"],
        ["--scheduler", "local:0"],
    ],
)
def test_bad_option_values_are_usage_errors(option, write_audio, capsys):
    path = write_audio("a.wav", chord_signal(4.0))
    code, _, err = run(["predict", path, *option], capsys)
    assert code == 2 and option[0] in err and "Traceback" not in err


def test_serve_without_its_extra_names_the_extra(monkeypatch, capsys):
    import sys

    # As if the extra were not installed: both modules `serve` imports its server through
    # (an earlier test in this process may have imported them already).
    monkeypatch.setitem(sys.modules, "moodscope.service.app", None)
    monkeypatch.setitem(sys.modules, "moodscope.service.server", None)
    code, _, err = run(["serve"], capsys)
    assert code == 1 and "pip install '.[serve]'" in err


def test_version_and_exit_codes(capsys):
    from moodscope import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"moodscope {__version__}"
    assert run(["predict"], capsys)[0] == 2  # a missing argument: usage error
    assert run(["no-such-command"], capsys)[0] == 2


# What a person reads: paths and emotions never cut, the format the output's name says,
# options that do nothing in a format say so, help in words.

LONG = "music/classical/Beethoven - Symphony No. 5 in C minor, Op. 67 - {}.flac"
MOVEMENTS = ("I. Allegro con brio", "II. Andante con moto", "III. Scherzo")


def _predictions():
    from moodscope.emotions import EMOTIONS
    from moodscope.inference.predictor import Prediction

    shares = {e: 0.05 for e in EMOTIONS} | {"joyful_activation": 0.45, "nostalgia": 0.15}
    ok = [
        Prediction(path=LONG.format(m), emotions=shares, top_emotion="joyful_activation",
                   duration=180.0, confidence=0.62)
        for m in MOVEMENTS
    ]  # fmt: skip
    return [*ok, Prediction(path="music/notes.mp3", error="music/notes.mp3: is not audio")]


def _shown(monkeypatch, *, width: int, terminal: bool) -> str:
    import io

    from rich.console import Console

    from moodscope.cli import console

    screen = Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)
    monkeypatch.setattr(console, "out", screen)
    console.show_predictions(_predictions())
    return screen.file.getvalue()


def test_a_table_into_a_pipe_has_every_path_whole_on_its_line(monkeypatch):
    shown = _shown(monkeypatch, width=80, terminal=False)
    lines = shown.splitlines()
    for m in MOVEMENTS:
        (line,) = [ln for ln in lines if LONG.format(m) in ln]
        assert "joyful_activation" in line and "fairly sure 62%" in line
    assert "…" not in shown


def test_a_table_on_a_very_narrow_terminal_folds_rather_than_cuts(monkeypatch):
    shown = _shown(monkeypatch, width=50, terminal=True)
    assert "…" not in shown and max(map(len, shown.splitlines())) <= 50


@pytest.mark.parametrize("width", [80, 100])
def test_a_table_on_a_narrow_terminal_folds_and_cuts_nothing(monkeypatch, width):
    shown = _shown(monkeypatch, width=width, terminal=True)
    lines = shown.splitlines()
    assert "…" not in shown and max(map(len, lines)) <= width
    # Every emotion's name whole; every path whole once its folded pieces are put together.
    assert sum(ln.count("joyful_activation") for ln in lines) >= 2 * len(MOVEMENTS)
    file_column = min(ln.index("joyful_activation") for ln in lines if "joyful_activation" in ln)
    folded = "".join(ln[:file_column].strip() for ln in lines).replace(" ", "")
    for m in MOVEMENTS:
        assert LONG.format(m).replace(" ", "") in folded


@pytest.mark.parametrize(
    "name, first", [("moods.csv", "path,top_emotion,"), ("moods.jsonl", '{"path": '),
                    ("moods.json", "[")],
)  # fmt: skip
def test_the_output_name_sets_the_format(name, first, write_audio, tmp_path, capsys):
    path = write_audio("a.wav", chord_signal(4.0))
    code, _, _ = run(["predict", path, "--workers", "1", "--output", tmp_path / name], capsys)
    assert code == 0 and (tmp_path / name).read_text().startswith(first)


def test_a_format_the_output_name_contradicts_is_refused(write_audio, tmp_path, capsys):
    path = write_audio("a.wav", chord_signal(4.0))
    out = tmp_path / "moods.csv"
    code, _, err = run(["predict", path, "--format", "json", "--output", out], capsys)
    assert code == 2 and not out.exists()
    assert err.strip().splitlines() == [
        f"error: --format json does not match --output {out} (a .csv name): drop --format, "
        "or name the file .json"
    ]


@pytest.mark.parametrize("name", ["moods.xlsx", "moods.tsv"])
def test_an_output_name_that_says_no_format_is_refused_unless_the_format_is_given(
    name, write_audio, tmp_path, capsys
):
    path = write_audio("a.wav", chord_signal(4.0))
    out = tmp_path / name
    code, _, err = run(["predict", path, "--workers", "1", "--output", out], capsys)
    assert code == 2 and not out.exists()
    assert err.strip().splitlines() == [
        f"error: --output {out}: a {out.suffix} name says no format moodscope writes; name "
        "the file .json, .jsonl or .csv, or give --format"
    ]
    code, _, _ = run(["predict", path, "--workers", "1", "--output", out, "--format", "csv"],
                     capsys)  # fmt: skip
    assert code == 0 and out.read_text().startswith("path,top_emotion,")


def test_the_timeline_with_the_table_says_where_it_goes(write_audio, capsys, wide):
    path = write_audio("a.wav", chord_signal(4.0))
    code, out, err = run(["predict", path, "--workers", "1", "--timeline"], capsys)
    assert code == 0 and "a.wav" in out
    assert "note: the table shows no timeline; --timeline is written with --format json" in err


def test_a_table_asked_into_a_file_says_it_writes_json(write_audio, tmp_path, capsys):
    path, out = write_audio("a.wav", chord_signal(4.0)), tmp_path / "moods.txt"
    code, _, err = run(["predict", path, "--workers", "1", "--format", "table", "--output", out],
                       capsys)  # fmt: skip
    assert code == 0 and out.read_text().startswith("[")
    assert f"note: the table is for the terminal; {out} gets JSON" in err


def _commands():
    from moodscope.cli.main import EVERYDAY, RESEARCH

    return [c.__name__.replace("_", "-") for c in (*EVERYDAY, *RESEARCH)]


@pytest.mark.parametrize("command", [[], *([c] for c in _commands())])
def test_help_names_what_options_take_not_python_types(command, monkeypatch, capsys):
    import re

    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0
    assert not re.search(r"<(str|bool|int|float|path|list|text)\b", out, re.I), out
    if command == ["predict"]:
        assert re.search(r"--workers +N ", out) and re.search(r"--output +FILE ", out)


def test_the_command_list_opens_with_the_everyday_commands(monkeypatch, capsys):
    import re

    monkeypatch.setenv("COLUMNS", "200")
    _, out, _ = run(["--help"], capsys)
    at = {c: re.search(rf"^│ {c} ", out, re.M).start() for c in _commands()}
    everyday = ["predict", "tag", "untag", "find", "serve", "demo"]
    assert sorted(at, key=at.get)[:6] == everyday
    assert out.index("Research and evaluation") > at["demo"]


def test_a_not_music_row_says_so_and_why(monkeypatch):
    import io

    from rich.console import Console

    from moodscope.cli import console
    from moodscope.inference.predictor import Prediction

    hum = Prediction(path="hum.wav", duration=12.0, music=False, not_music="a steady tone")
    screen = Console(file=io.StringIO(), width=120, color_system=None)
    monkeypatch.setattr(console, "out", screen)
    console.show_predictions([hum])
    (row,) = [ln for ln in screen.file.getvalue().splitlines() if "hum.wav" in ln]
    assert "not music (a steady tone)" in row and "12.0 s" in row
