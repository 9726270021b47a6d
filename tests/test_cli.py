"""The command line as people type it: global options before the command, and pipes closed early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--home", "H", "--db-url", "sqlite:///x.db", "-v", "status"],
        ["status", "--home", "H", "--db-url", "sqlite:///x.db", "-v"],
        ["--home", "ignored", "-v", "status", "--home", "H", "--db-url", "sqlite:///x.db"],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.home, args.db_url, args.verbose) == ("H", "sqlite:///x.db", True)


def test_options_left_out_keep_their_defaults() -> None:
    args = build_parser().parse_args(["status"])
    assert (args.home, args.db_url, args.verbose) == (None, None, False)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`soundsearch status | head`: the reader leaves before the CLI writes; no traceback, SIGPIPE's status."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "--home", str(tmp_path / "home"), "status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_a_hit_reads_as_the_sound_s_cosine_and_the_words_that_matched() -> None:
    """Not the fusion value (0.0328 says nothing to a person): the cosine, the words, where in the file."""
    from api.commands.search import format_hit
    from search.engine import Hit

    both = Hit(
        1, Path("/lib/Rain_Roof.wav"), 0.0328, 20.0, 30.0, 60.0, "WAV", audio_score=0.83, matched_terms=("rain",)
    )
    line = format_hit(1, both.to_dict())
    assert "0.83 audio · words: rain" in line and "0.0328" not in line
    assert "/lib/Rain_Roof.wav" in line and "at 0:20.0" in line
    words_only = Hit(2, Path("/lib/Rain_Tin.wav"), 0.0161, 0.0, 4.0, 4.0, "WAV", matched_terms=("rain", "roof"))
    words_line = format_hit(2, words_only.to_dict())
    assert "words: rain, roof" in words_line and "audio" not in words_line
    example = Hit(
        3,
        Path("/lib/Street.wav"),
        0.91,
        30.0,
        40.0,
        45.0,
        "WAV",
        audio_score=0.91,
        query_start_s=10.0,
        query_end_s=20.0,
    )
    example_line = format_hit(3, example.to_dict())
    assert "0.91 audio" in example_line and "at 0:30.0 (example 0:10.0-0:20.0)" in example_line
