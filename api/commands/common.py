"""Options and helpers shared by the catalog commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tqdm import tqdm

from search.indexing import RunProgress
from storage.catalog import Catalog


def add_catalog_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """`--home` and `--db-url`, accepted before the command (as with git or docker) and after it.

    A subcommand's copy defaults to SUPPRESS, so that leaving it out there keeps what was given before the command.
    """
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--home", default=default, help="catalog folder (default: $SOUNDSEARCH_HOME, else the per-user data folder)"
    )
    parser.add_argument(
        "--db-url", default=default, help="SQLAlchemy database URL (default: SQLite in the catalog folder)"
    )


def add_verbose_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=False if top_level else argparse.SUPPRESS, help="log details"
    )


def open_catalog(args: argparse.Namespace, *, writable: bool = True) -> Catalog:
    return Catalog.open(args.home, db_url=args.db_url, writable=writable)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


class TqdmProgress(RunProgress):
    """Files, audio hours and ETA on a terminal; silent when stderr is not one."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: tqdm[Any] | None = None
        self.audio_s = 0.0

    def start(self, files: int, audio_seconds: float) -> None:
        if self.enabled:
            self.bar = tqdm(total=files, unit="file", desc="indexing", dynamic_ncols=True)

    def advance(self, files: int, audio_seconds: float) -> None:
        self.audio_s += audio_seconds
        if self.bar is not None:
            self.bar.update(files)
            self.bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio", refresh=False)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
