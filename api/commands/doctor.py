"""`soundsearch doctor [--repair]`: check a catalog and mend what can be mended (see `storage.doctor`)."""

from __future__ import annotations

import argparse
from typing import Any

from api.commands.common import add_catalog_options, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the catalog (database integrity, schema, vector index against the database, files "
        "without vectors) and, with --repair, mend what can be mended",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="recover a damaged database into a new file (keeping the damaged one), rebuild the vector index "
        "from the database, mark files without vectors for re-embedding, delete orphan segments",
    )
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Exit status 0 when the catalog is healthy (or was repaired), 1 when a problem remains."""
    from storage.doctor import diagnose
    from storage.location import resolve_home

    findings = diagnose(resolve_home(args.home), args.db_url, repair=args.repair)
    healthy = all(f.healthy for f in findings)
    if args.json:
        print_json({"healthy": healthy, "findings": [f.to_dict() for f in findings]})
        return 0 if healthy else 1
    width = max(len(f.check) for f in findings)
    for f in findings:
        mark = "ok" if f.ok else ("repaired" if f.repaired else "PROBLEM")
        print(f"{f.check:<{width}}  {mark:<8}  {f.detail}")
        if f.action and not f.ok:
            print(f"{'':<{width}}  {'':<8}  → {f.action}")
    return 0 if healthy else 1
