"""`soundsearch export`: a region of a library file, at the file's own quality, to a file for the DAW."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.commands.common import add_catalog_options, open_catalog
from indexer.errors import SoundsearchError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="cut [start, end) of a library file, sample-exact at its own rate, bit depth and channels",
    )
    p.add_argument("source", metavar="ID_OR_PATH", help="an indexed file's id, or a file inside the library roots")
    p.add_argument("--start", type=float, required=True, metavar="S", help="region start, seconds")
    p.add_argument("--end", type=float, required=True, metavar="S", help="region end, seconds (not included)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the region")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument(
        "--reencode",
        choices=("wav", "flac"),
        help="a lossy source (MP3, Ogg Vorbis, Opus): decode and write WAV (float) or FLAC (24-bit) instead",
    )
    add_catalog_options(p)
    p.set_defaults(run=run_export)


def _source_path(args: argparse.Namespace) -> Path:
    """The file to cut: by catalog id, or a path; either way it must lie inside the catalog's library roots."""
    from indexer.scan import within
    from search.query import is_path_like

    with open_catalog(args, writable=False) as catalog:
        roots = catalog.roots()
        if is_path_like(args.source):
            path = Path(args.source).expanduser().absolute()
        else:
            record = catalog.file(int(args.source))
            if record is None:
                raise SoundsearchError(f"no file with id {args.source} in the catalog")
            path = record.path
    if not path.is_file():
        raise SoundsearchError(f"{path}: no such file")
    if not within(path, roots):
        raise SoundsearchError(f"{path} lies outside the library roots: export cuts library files only")
    return path


def run_export(args: argparse.Namespace) -> int:
    from indexer.regions import check_output_name, plan_region, write_region
    from storage.atomic import atomic_path

    plan = plan_region(_source_path(args), args.start, args.end, reencode=args.reencode)
    out: Path = args.out
    check_output_name(plan, out)
    if out.is_dir():
        raise SoundsearchError(f"{out} is a folder: give the file to write")
    if out.exists() and not args.force:
        raise SoundsearchError(f"{out} exists: add --force to replace it")
    with atomic_path(out) as tmp:
        write_region(plan, tmp)
    print(f"wrote {out}: {plan.start_s}-{plan.end_s} s of {plan.source.name}, {plan.describe()}")
    return 0
