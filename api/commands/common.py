"""Options and helpers shared by the catalog commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

# Nothing heavy at import: every command module imports this one, and `soundsearch --help` imports them all.
if TYPE_CHECKING:
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
    from storage.catalog import Catalog

    return Catalog.open(args.home, db_url=args.db_url, writable=writable)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
