"""`soundsearch search`, `similar`, `duplicates` and `classify`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.commands.common import add_catalog_options, open_catalog, print_json
from search.query import MODES, Filters


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="find sounds by description")
    p.add_argument("query", help='what it sounds like; "-word" excludes, e.g. "rain -thunder"')
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument("--mode", choices=MODES, default="hybrid", help="vector, text (names/tags) or both fused")
    p.add_argument("--like", metavar="FILE_OR_ID", help="mix in an example sound: like this, but ...")
    p.add_argument("--like-weight", type=float, default=0.5, help="weight of --like against the text (0-1)")
    _add_output_and_filters(p)
    p.set_defaults(run=run_search)

    p = sub.add_parser("similar", help="find sounds like an example (a file, or an indexed file's id)")
    p.add_argument("example", metavar="FILE_OR_ID")
    p.add_argument("-k", type=int, default=20)
    _add_output_and_filters(p)
    p.set_defaults(run=run_similar)

    p = sub.add_parser("duplicates", help="groups of near-identical files in the library")
    p.add_argument("--threshold", type=float, default=0.97, help="cosine similarity of whole files (default 0.97)")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_duplicates)

    p = sub.add_parser("classify", help="zero-shot classification against labels you type")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--library", action="store_true", help="classify every indexed file (stored vectors)")
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help='comma-separated labels, e.g. "dog, cat, rain"')
    labels.add_argument("--labels-file", type=Path, help="one label per line")
    p.add_argument("--multi-label", action="store_true", help="score each label on its own (several may apply)")
    p.add_argument("--template", action="append", help="prompt template with {} (repeatable; default: an ensemble)")
    p.add_argument("--top", type=int, default=5, help="labels shown per file (default 5)")
    p.add_argument("--save-as-tags", action="store_true", help="with --library: store the labels as tags")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label score kept as a tag (default 0.5)")
    p.add_argument("--model", help="model spec (default: the catalog's model)")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_classify)


def _add_output_and_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-duration", type=float, metavar="S")
    p.add_argument("--max-duration", type=float, metavar="S")
    p.add_argument("--folder", help="only files under this folder (a path or a folder name)")
    p.add_argument("--tag", action="append", default=[], help="only files with this tag (repeatable)")
    p.add_argument("--format", action="append", default=[], help="only this format, e.g. wav (repeatable)")
    p.add_argument(
        "--ucs",
        action="append",
        default=[],
        metavar="CODE",
        help="only this UCS CatID or category, e.g. DOOR (repeatable)",
    )
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        min_duration_s=args.min_duration,
        max_duration_s=args.max_duration,
        folder=args.folder,
        tags=tuple(args.tag),
        formats=tuple(args.format),
        ucs=tuple(args.ucs),
    )


def _engine(args: argparse.Namespace) -> Any:
    from search.engine import Engine

    catalog = open_catalog(args, writable=False)
    return Engine(catalog, catalog.load_encoder(getattr(args, "model", None)))


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _print_hits(hits: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    if not hits:
        print("no results")
    for i, h in enumerate(hits, 1):
        where = f"at {_clock(h.start_s)}" if h.duration_s and h.duration_s > h.end_s - h.start_s + 0.01 else ""
        tags = f"  [{', '.join(h.tags[:4])}]" if h.tags else ""
        duration = f"{h.duration_s:.1f}s" if h.duration_s is not None else "?"
        print(f"{i:3d}. {h.score:7.4f}  {h.path}  ({duration} {h.format or ''}) {where}{tags}")


def run_search(args: argparse.Namespace) -> int:
    engine = _engine(args)
    like = args.like
    hits = engine.search(
        args.query, args.k, mode=args.mode, filters=_filters(args), like=like, like_weight=args.like_weight
    )
    engine.close()
    _print_hits(hits, args.json)
    return 0


def run_similar(args: argparse.Namespace) -> int:
    engine = _engine(args)
    hits = engine.similar(args.example, args.k, filters=_filters(args))
    engine.close()
    _print_hits(hits, args.json)
    return 0


def run_duplicates(args: argparse.Namespace) -> int:
    engine = _engine(args)
    groups = engine.duplicates(args.threshold)
    engine.close()
    if args.json:
        print_json([[h.to_dict() for h in g] for g in groups])
        return 0
    print(f"{len(groups)} group(s) of near-identical files")
    for g in groups:
        print()
        for h in g:
            print(f"  {h.score:6.3f}  {h.path}")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from indexer.errors import SoundsearchError
    from search.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier, classify_library, parse_labels, tags_from

    if args.labels_file is not None:
        try:
            labels = parse_labels(lines=args.labels_file.read_text(encoding="utf-8").splitlines())
        except OSError as exc:
            raise SoundsearchError(f"cannot read labels file {args.labels_file}: {exc.strerror}") from None
    else:
        labels = parse_labels(args.labels)
    if args.library == bool(args.files):
        raise SoundsearchError("give audio FILEs to classify, or --library (not both)")
    if args.save_as_tags and not args.library:
        raise SoundsearchError("--save-as-tags works with --library")
    with open_catalog(args, writable=args.save_as_tags) as catalog:
        encoder = catalog.load_encoder(args.model)
        classifier = ZeroShotClassifier(
            encoder, labels, templates=args.template or DEFAULT_TEMPLATES, multi_label=args.multi_label
        )
        if args.library:
            results = classify_library(catalog, classifier)
            predictions = [p for _, p in results]
            if args.save_as_tags:
                tags = {fid: tags_from(p, multi_label=args.multi_label, threshold=args.threshold) for fid, p in results}
                n = catalog.set_tags("zeroshot", tags)
                if not args.json:
                    print(f"saved {n} tag(s) on {len(tags)} file(s)")
        else:
            predictions = classifier.predict_files(args.files)
    if args.json:
        print_json([p.to_dict(top=max(1, args.top)) for p in predictions])
        return 0
    for p in predictions:
        print(p.source)
        for label, score in p.scores[: max(1, args.top)]:
            bar = "█" * round(score * 30)
            print(f"   {score:6.1%}  {bar:<30}  {label}")
    return 0
