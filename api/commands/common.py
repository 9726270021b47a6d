"""Options and helpers shared by the catalog commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

# Nothing heavy at import: every command module imports this one, and `soundsearch --help` imports them all.
if TYPE_CHECKING:
    from api.client import ServerClient
    from storage.catalog import Catalog

T = TypeVar("T")
log = logging.getLogger(__name__)


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


def add_server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-server",
        action="store_true",
        help="work on the catalog here even when `soundsearch serve` runs on it (by default it answers)",
    )


def through_server(args: argparse.Namespace, ask: Callable[[ServerClient], T]) -> T | None:
    """`ask(server)` when a live `soundsearch serve` serves this catalog (api.address); None: work locally
    (no server, `--no-server`, or it went away meanwhile). The server's errors are the command's errors."""
    if args.no_server:
        return None
    from api.address import find_server
    from api.client import ServerClient, ServerUnreachable
    from storage.location import database_url, resolve_home

    home = resolve_home(args.home)
    found = find_server(home, database_url(home, args.db_url))
    if found is None:
        return None
    log.info("asking the server at %s (--no-server: work here)", found.url)
    try:
        return ask(ServerClient(found))
    except ServerUnreachable as exc:
        log.info("%s; working here", exc)
        return None


def open_catalog(args: argparse.Namespace, *, writable: bool = True) -> Catalog:
    from storage.catalog import Catalog

    return Catalog.open(args.home, db_url=args.db_url, writable=writable)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
