"""`soundsearch write-tags`: what the catalog knows (tags, captions, UCS fields) written into the files themselves.

Heavy modules are imported inside the functions: `soundsearch --help` should not pay for them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api.commands.common import add_catalog_options, open_catalog, print_json
from indexer.errors import SoundsearchError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "write-tags",
        help="write the catalog's tags, captions and UCS fields into the files (BWF/iXML, Vorbis comments, ID3)",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="indexed files to write into")
    p.add_argument("--library", action="store_true", help="every indexed file")
    p.add_argument(
        "--ucs-csv", type=Path, metavar="FILE", help="the UCS list, to write each CatID's category and subcategory too"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be written; change nothing")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_write_tags)


def run_write_tags(args: argparse.Namespace) -> int:
    from search.ucs_list import load_ucs_csv
    from search.writeback import known_fields, write_back

    if args.library == bool(args.files):
        raise SoundsearchError("give indexed FILEs to write into, or --library (not both)")
    categories = load_ucs_csv(args.ucs_csv) if args.ucs_csv is not None else []
    with open_catalog(args, writable=not args.dry_run) as catalog:
        ids = [f.id for f in catalog.files(status="ok")] if args.library else indexed_ids(catalog, args.files)
        fields = known_fields(catalog, ids, categories)
        if args.dry_run:
            planned = planned_tags(catalog, fields)
            print_json({"would_write": planned}) if args.json else print_planned_tags(planned)
            return 0
        report = write_back(catalog, fields)
    if args.json:
        print_json(report.to_dict())
    else:
        print_write_report(report)
    return 1 if report.errors else 0


def indexed_ids(catalog: Any, files: Sequence[str]) -> list[int]:
    """The catalog ids of files given on the command line; files it does not hold are refused, by name."""
    by_path = {str(f.path): f.id for f in catalog.files(status="ok")}
    wanted = [str(Path(f).expanduser().absolute()) for f in files]
    unknown = [f for f in wanted if f not in by_path]
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise SoundsearchError(f"not in the catalog (index them first): {', '.join(unknown[:3])}{more}")
    return [by_path[f] for f in wanted]


def planned_tags(catalog: Any, fields: dict[int, Any]) -> dict[str, dict[str, str]]:
    """What a write would put into each file, by path (for --dry-run)."""
    paths = catalog.paths(list(fields))
    return {paths[fid]: tags.as_fields() for fid, tags in fields.items() if fid in paths}


def print_planned_tags(planned: dict[str, dict[str, str]]) -> None:
    for path, values in planned.items():
        print(f"would write into {path}:")
        for name, value in values.items():
            print(f"   {name:<12} {value}")
        if not values:
            print("   (nothing known to write)")


def print_write_report(report: Any) -> None:
    skipped = f", {len(report.skipped)} had nothing to write" if report.skipped else ""
    print(f"wrote tags into {len(report.written)} file(s){skipped}")
    for err in report.errors:
        print(f"  not written: {err['path']}: {err['reason']}")
