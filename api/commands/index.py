"""`soundsearch index`, `status` and `reindex`: build and inspect a catalog."""

from __future__ import annotations

import argparse
from functools import partial
from typing import TYPE_CHECKING, Any

from api.commands.common import add_catalog_options, add_server_option, open_catalog, print_json, through_server
from indexer.errors import SoundsearchError
from indexer.fsnames import display

if TYPE_CHECKING:
    from api.client import ServerClient
    from captioning.catalog import FileCaptioner
    from indexer.encoders.base import Encoder
    from indexer.pipeline import Executor


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="index (or update) library folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="library folder(s)")
    p.add_argument("--model", help="model spec for a new catalog (default: the catalog's own model)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoders (0: decode inline; default: 2 beside a CPU model, all cores but one, up to 8, beside a GPU)",
    )
    p.add_argument(
        "--decoders",
        choices=("threads", "processes"),
        default=None,
        help="run decoders as threads or processes (default: processes beside a GPU model, threads beside a CPU)",
    )
    p.add_argument("--commit-every", type=int, default=64, metavar="N", help="files per transaction (default: 64)")
    p.add_argument(
        "--follow-links-outside",
        action="store_true",
        help="also index files that symlinks lead to outside the given folders (skipped by default; the server "
        "never plays them)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where files are decoded and embedded: this process (default), or a Ray cluster (needs the "
        "'cluster' extra); the plan and the catalog writes are the same",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --engine ray: a running cluster (host:port, ray://host:10001, or 'auto'); default: a local "
        "Ray instance on 127.0.0.1 for this run",
    )
    p.add_argument(
        "--ray-actors",
        type=int,
        metavar="N",
        help="with --engine ray: embedding models (default: one per GPU in the cluster, else half its CPUs)",
    )
    _add_budget_option(p)
    p.add_argument("--caption", action="store_true", help="write a caption for every new or changed file")
    p.add_argument("--json", action="store_true", help="print one JSON summary instead of a progress bar")
    add_catalog_options(p)
    p.set_defaults(run=run_index)

    p = sub.add_parser("status", help="what the catalog holds")
    p.add_argument("--json", action="store_true")
    p.add_argument("--failed", action="store_true", help="list the files that failed, with reasons")
    add_catalog_options(p)
    add_server_option(p)
    p.set_defaults(run=run_status)

    p = sub.add_parser(
        "reindex",
        help="rebuild every vector with another model (beside the old ones, swapped in when done; "
        "an interrupted run resumes)",
    )
    p.add_argument("--model", required=True, help="the new model spec")
    p.add_argument("--device")
    p.add_argument("--commit-every", type=int, default=64, metavar="N", help="files per transaction (default: 64)")
    _add_budget_option(p)
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_reindex)


def _budget(text: str) -> str | None:
    from indexer.settings import parse_bytes

    if text == "auto":
        return None
    try:
        parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_budget_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-index-memory",
        type=_budget,
        default=argparse.SUPPRESS,
        metavar="SIZE",
        help="memory budget of the vector index, kept by the catalog (600MB, 12GiB; 'auto': a quarter of RAM); "
        "the index type is chosen from it and the catalog's size, and rebuilt in the background when it changes",
    )


def _apply_budget(catalog: Any, args: argparse.Namespace) -> None:
    """Record a new budget; the index is re-planned after the run (the catalog waits for it on close)."""
    if hasattr(args, "max_index_memory"):
        catalog.set_index_budget(args.max_index_memory)


def run_index(args: argparse.Namespace) -> int:
    from api.progress import TqdmProgress
    from indexer.pipeline import IndexOptions
    from search.indexing import index_library

    executor = _executor(args)
    with open_catalog(args) as catalog:
        encoder = catalog.load_encoder(args.model, args.device)
        _apply_budget(catalog, args)
        result = index_library(
            catalog,
            encoder,
            args.paths,
            options=IndexOptions(
                workers=args.workers,
                processes=None if args.decoders is None else args.decoders == "processes",
                commit_every_files=max(1, args.commit_every),
                follow_links_outside=args.follow_links_outside,
            ),
            progress=TqdmProgress(enabled=not args.json),
            executor=executor,
            captioner=partial(_captioner, encoder) if args.caption else None,
        )
    if args.json:
        print_json(result.to_dict())
    else:
        print_summary(result.to_dict())
    return 0


def _executor(args: argparse.Namespace) -> Executor | None:
    """The Ray executor when asked for; None: the local pipeline."""
    if args.engine != "ray":
        if args.ray_address is not None or args.ray_actors is not None:
            raise SoundsearchError("--ray-address and --ray-actors go with --engine ray")
        return None
    if args.ray_actors is not None and args.ray_actors < 1:
        raise SoundsearchError("--ray-actors must be at least 1")
    from indexer.ray_engine import RayExecutor

    return RayExecutor(address=args.ray_address, actors=args.ray_actors)


def _captioner(encoder: Encoder) -> FileCaptioner:
    from captioning.captioner import load_captioner

    try:
        return load_captioner(encoder=encoder)
    except SoundsearchError:
        return load_captioner()  # trained on another encoder: it brings its own


def run_reindex(args: argparse.Namespace) -> int:
    from api.progress import TqdmProgress
    from indexer.encoders.registry import load_encoder
    from indexer.pipeline import IndexOptions
    from indexer.reindex import reindex

    with open_catalog(args) as catalog:
        encoder = load_encoder(args.model, device=args.device)
        summary = reindex(
            catalog,
            encoder,
            options=IndexOptions(commit_every_files=max(1, args.commit_every)),
            progress=TqdmProgress(enabled=not args.json),
        )
        _apply_budget(catalog, args)  # after the run: a reindex refused by the lock changes nothing
        catalog.maybe_rebuild_index()
    if args.json:
        print_json(summary.to_dict())
    else:
        print_summary(summary.to_dict())
    return 0


def _status_report(server: ServerClient) -> dict[str, Any]:
    report: dict[str, Any] = server.get("/api/status")["catalog"]
    return report


def run_status(args: argparse.Namespace) -> int:
    # A running server answers the report (not the list of failed files, which the API does not give).
    status = None if args.failed else through_server(args, _status_report)
    failed: list[dict[str, Any]] = []
    if status is None:
        with open_catalog(args, writable=False) as catalog:
            status = catalog.status().to_dict()
            failed = [{"path": display(str(f.path)), "error": f.error} for f in catalog.files(status="failed")]
    if args.json:
        print_json({**status, "failed_files": failed} if args.failed else status)
        return 0
    width = max(len(k) for k in status)
    for key, value in status.items():
        print(f"{key:<{width}}  {value}")
    if args.failed:
        print(f"\n{len(failed)} failed file(s):")
        for f in failed:
            print(f"  {f['path']}: {f['error']}")
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    keys = ("added", "updated", "unchanged", "moved", "removed", "failed", "segments")
    print(", ".join(f"{summary[k]} {k}" for k in keys) + f" in {summary['seconds']:.1f} s")
    for err in summary["errors"]:
        print(f"  ! {err['path']}: {err['reason']}")
