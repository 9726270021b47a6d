"""`soundsearch watch`: keep the catalog following library folders as files appear, change, move or leave."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from api.commands.common import add_catalog_options, open_catalog
from api.commands.index import print_summary
from indexer.fsnames import display

if TYPE_CHECKING:
    from search.indexing import IndexingResult


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help="index library folders as files appear, change, move or leave (Ctrl-C stops)")
    p.add_argument("paths", nargs="+", metavar="LIB", help="library folder(s) to watch")
    p.add_argument("--model", help="model spec for a new catalog (default: the catalog's own model)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--workers", type=int, default=None, help="decoders per run (as for `soundsearch index`)")
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        metavar="S",
        help="quiet seconds after a change before indexing (default 2)",
    )
    p.add_argument(
        "--max-delay",
        type=float,
        default=30.0,
        metavar="S",
        help="index at least this often while changes keep coming, e.g. a long recording (default 30)",
    )
    p.add_argument(
        "--poll",
        type=float,
        metavar="S",
        help="look for changes every S seconds instead of waiting for the system's notifications (network shares)",
    )
    add_catalog_options(p)
    p.set_defaults(run=run_watch)


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def run_watch(args: argparse.Namespace) -> int:
    from api.progress import TqdmProgress
    from indexer.pipeline import IndexOptions
    from search.watching import LibraryWatcher, WatchOptions, WatchReport

    class Printed(WatchReport):
        def indexed(self, result: IndexingResult) -> None:
            print(f"[{_stamp()}] ", end="")
            print_summary(result.to_dict())
            print(end="", flush=True)

        def failed(self, error: Exception) -> None:
            print(f"[{_stamp()}] ! {error} (trying again)", flush=True)

    options = WatchOptions(
        settle_s=args.settle, max_delay_s=args.max_delay, poll_s=args.poll, index=IndexOptions(workers=args.workers)
    )
    with open_catalog(args) as catalog:
        encoder = catalog.load_encoder(args.model, args.device)
        watcher = LibraryWatcher(
            catalog, encoder, args.paths, options=options, report=Printed(), progress=TqdmProgress()
        )
        print(f"[{_stamp()}] watching {', '.join(display(str(r)) for r in watcher.roots)} (Ctrl-C stops)", flush=True)
        # Ctrl-C, and a service manager's stop (SIGTERM), end the watch, whatever handlers were set before
        # (a process that ignores SIGINT, or a host that installed its own): put back afterwards.
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = [signal.signal(sig, signal.default_int_handler) for sig in stops]
        try:
            with contextlib.suppress(KeyboardInterrupt):  # how a watch ends
                watcher.run(threading.Event())
        finally:
            for sig, handler in zip(stops, previous, strict=True):
                signal.signal(sig, handler)
    print(f"[{_stamp()}] stopped watching", flush=True)
    return 0
