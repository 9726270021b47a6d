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
