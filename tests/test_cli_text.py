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

    monkeypatch.setitem(sys.modules, "moodscope.service.app", None)  # as if not installed
    code, _, err = run(["serve"], capsys)
    assert code == 1 and "pip install '.[serve]'" in err


def test_version_and_exit_codes(capsys):
    from moodscope import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"moodscope {__version__}"
    assert run(["predict"], capsys)[0] == 2  # a missing argument: usage error
    assert run(["no-such-command"], capsys)[0] == 2
