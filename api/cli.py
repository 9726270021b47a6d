"""`soundsearch` command line: a thin layer over the Python API.

Each subcommand lives in `api.commands.<name>` and exposes `register(subparsers)`, which adds its
parser and sets `run` to a function taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from api.commands.common import add_catalog_options, add_verbose_option
from indexer.errors import SoundsearchError

# Imported lazily so that `soundsearch --help` does not pay for torch/transformers imports.
COMMAND_MODULES: tuple[str, ...] = (
    "api.commands.index",
    "api.commands.watch",
    "api.commands.search",
    "api.commands.export",
    "api.commands.eval",
    "api.commands.synth",
    "api.commands.tagger",
    "api.commands.serve",
    "api.commands.train",
    "api.commands.caption",
    "api.commands.doctor",
    "api.commands.ucs",
    "api.commands.write_tags",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundsearch",
        description="Audio-text retrieval and zero-shot search for sound libraries.",
    )
    add_verbose_option(parser, top_level=True)
    add_catalog_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():
        add_verbose_option(command)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader went away (`soundsearch status | head`): stop without a traceback, as `git log | head` does.

    Python would report the failed flush of stdout at exit, so stdout is pointed at /dev/null first.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, the status of a process the signal ended


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # inside the guard: the last buffered lines can meet a closed pipe too
    except SoundsearchError as exc:
        # Domain errors are the user's to fix: one line, exit code 2 like argparse's usage errors.
        print(f"soundsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soundsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return code


if __name__ == "__main__":
    sys.exit(main())
