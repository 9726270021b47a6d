"""`soundsearch ucs`: a UCS category (stored as a tag) and a UCS file name for each indexed file.

Heavy modules are imported inside the functions: `soundsearch --help` should not pay for them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.commands.common import add_catalog_options, open_catalog, print_json
from indexer.errors import SoundsearchError

PLACEHOLDERS = ("CreatorID", "SourceID")  # shown in suggested names until --creator/--source are given


def register(sub: Any) -> None:
    p = sub.add_parser("ucs", help="classify the library into UCS categories, tag it and suggest UCS file names")
    p.add_argument("files", nargs="*", metavar="FILE", help="indexed files to classify")
    p.add_argument("--library", action="store_true", help="every indexed file")
    p.add_argument(
        "--ucs-csv", type=Path, required=True, metavar="FILE", help="the UCS list: CSV export of the UCS spreadsheet"
    )
    p.add_argument("--creator", metavar="ID", help="CreatorID of the names: who recorded or designed the sounds")
    p.add_argument("--source", metavar="ID", help="SourceID of the names: the project or library")
    p.add_argument(
        "--apply-names", action="store_true", help="rename the files to their UCS names (nothing is embedded again)"
    )
    p.add_argument("--write-tags", action="store_true", help="write category, FXName, caption and tags into the files")
    p.add_argument("--dry-run", action="store_true", help="show what would be renamed or written; change nothing")
    p.add_argument("--model", help="model spec (default: the catalog's model)")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_ucs)


def run_ucs(args: argparse.Namespace) -> int:
    from api.commands.write_tags import indexed_ids, planned_tags
    from search.renaming import apply_renames, plan_renames
    from search.ucs import assign, check_id, store_tags
    from search.ucs_list import load_ucs_csv
    from search.writeback import known_fields, write_back

    if args.library == bool(args.files):
        raise SoundsearchError("give indexed FILEs to classify, or --library (not both)")
    if args.apply_names and (args.creator is None or args.source is None):
        raise SoundsearchError("--apply-names needs --creator ID and --source ID (blocks of every UCS name)")
    given = (
        check_id(args.creator, "CreatorID") if args.creator is not None else None,
        check_id(args.source, "SourceID") if args.source is not None else None,
    )
    creator, source = (g or p for g, p in zip(given, PLACEHOLDERS, strict=True))
    categories = load_ucs_csv(args.ucs_csv)
    outcome = _Outcome()
    with open_catalog(args, writable=not args.dry_run) as catalog:
        ids = None if args.library else indexed_ids(catalog, args.files)
        assignments = assign(catalog, catalog.load_encoder(args.model), categories, ids)
        plan = plan_renames([(a.file_id, a.path, a.file_name(creator, source)) for a in assignments])
        if not args.dry_run:
            store_tags(catalog, assignments)
            if args.apply_names:
                outcome.renames = apply_renames(catalog, plan)
        if args.write_tags:  # after renaming: the fields are read from the catalog as it is now
            known = known_fields(catalog, [a.file_id for a in assignments], categories)
            fields = {a.file_id: a.tag_fields(known[a.file_id], *given) for a in assignments}
            if args.dry_run:
                outcome.planned = planned_tags(catalog, fields)
            else:
                outcome.writes = write_back(catalog, fields)
    rows = [a.to_dict(creator, source) for a in assignments]
    if args.json:
        print_json({"files": rows, **outcome.to_dict()})
    else:
        _print(rows, plan, outcome, named=bool(args.creator and args.source), dry_run=args.dry_run)
    return 1 if outcome.failed else 0


@dataclass
class _Outcome:
    """What a run did (or, with --dry-run, would do) besides classifying."""

    renames: Any = None  # search.renaming.RenameReport
    writes: Any = None  # search.writeback.WriteReport
    planned: dict[str, dict[str, str]] | None = None  # tags a dry run would write, by path

    @property
    def failed(self) -> bool:
        return bool((self.renames and self.renames.errors) or (self.writes and self.writes.errors))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.renames is not None:
            out["renamed"] = [{"from": str(r.old), "to": str(r.new)} for r in self.renames.renamed]
            out["rename_errors"] = self.renames.errors
        if self.writes is not None:
            out["tags"] = self.writes.to_dict()
        if self.planned is not None:
            out["would_write"] = self.planned
        return out


def _print(rows: list[dict[str, Any]], plan: list[Any], outcome: _Outcome, *, named: bool, dry_run: bool) -> None:
    """Each file's CatID, score and path with the UCS name it gets (or would get); then what was done."""
    from api.commands.write_tags import print_planned_tags, print_write_report

    new_names = {r.file_id: r.new.name for r in plan}
    for row in rows:
        name = f"  -> {new_names[row['file_id']]}" if row["file_id"] in new_names else ""
        print(f"{row['cat_id']:<10} {row['score']:6.1%}  {row['path']}{name}")
    if outcome.renames is not None:
        print(f"renamed {len(outcome.renames.renamed)} of {len(plan)} file(s)")
        for err in outcome.renames.errors:
            print(f"  not renamed: {err['path']}: {err['reason']}")
    elif plan and dry_run:
        print(f"{len(plan)} file(s) would be renamed with --apply-names (--dry-run: nothing was changed)")
    elif plan:
        hint = "" if named else " with --creator ID --source ID"
        print(f"{len(plan)} file(s) not named the UCS way: --apply-names{hint} renames them")
    if outcome.writes is not None:
        print_write_report(outcome.writes)
    if outcome.planned is not None:
        print_planned_tags(outcome.planned)
