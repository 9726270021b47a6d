"""`soundsearch` command line: a thin layer over the Python API.

Each subcommand lives in `api.commands.<name>` and exposes `register(subparsers)`, which adds its
parser and sets `run` to a function taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from indexer.errors import SoundsearchError

# Imported lazily so that `soundsearch --help` does not pay for torch/transformers imports.
COMMAND_MODULES: tuple[str, ...] = (
    "api.commands.index",
    "api.commands.search",
    "api.commands.eval",
    "api.commands.synth",
    "api.commands.tagger",
    "api.commands.serve",
    "api.commands.train",
    "api.commands.caption",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundsearch",
        description="Audio-text retrieval and zero-shot search for sound libraries.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        code: int = args.run(args)
    except SoundsearchError as exc:
        # Domain errors are the user's to fix: one line, exit code 2 like argparse's usage errors.
        print(f"soundsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soundsearch: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
