"""`soundsearch search`, `similar`, `duplicates` and `classify`.

`search`, `similar` (by id) and `classify` (files against --labels) ask a running `soundsearch serve` when one
serves the catalog (api.address): its model is loaded already. Both ways print through the same formatters,
fed the same rows (`Hit.to_dict()` here, the API's hits less the web page's fields there).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.commands.common import add_catalog_options, add_server_option, open_catalog, print_json, through_server
from search.query import MAX_API_K, MODES, Filters, is_path_like

if TYPE_CHECKING:
    from api.client import ServerClient

# What the API's hits carry for the web page only; the rest are `Hit.to_dict()`'s fields.
PAGE_FIELDS = ("name", "folder", "audio_url", "waveform_url")


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="find sounds by description")
    p.add_argument("query", help='what it sounds like; "-word" excludes, e.g. "rain -thunder"')
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument("--mode", choices=MODES, default="hybrid", help="vector, text (names/tags) or both fused")
    p.add_argument("--like", metavar="FILE_OR_ID", help="mix in an example sound: like this, but ...")
    p.add_argument("--like-weight", type=float, default=0.5, help="weight of --like against the text (0-1)")
    _add_output_and_filters(p)
    add_server_option(p)
    p.set_defaults(run=run_search)

    p = sub.add_parser("similar", help="find sounds like an example (a file, or an indexed file's id)")
    p.add_argument("example", metavar="FILE_OR_ID")
    p.add_argument("-k", type=int, default=20)
    _add_output_and_filters(p)
    add_server_option(p)
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
    add_server_option(p)
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
    from indexer.encoders.lazy import LazyEncoder
    from search.engine import Engine

    catalog = open_catalog(args, writable=False)
    bound = catalog.binding
    if bound is None:  # an empty catalog: the default model, which indexing will bind
        return Engine(catalog, catalog.load_encoder())
    # The catalog's own model, loaded only if the search embeds something (a text search does not).
    return Engine(catalog, LazyEncoder(bound.model_id, bound.dim, catalog.load_encoder))


def _filter_params(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The filters as the API's query parameters (the same names)."""
    return [
        ("min_duration", args.min_duration),
        ("max_duration", args.max_duration),
        ("folder", args.folder),
        *(("tag", tag) for tag in args.tag),
        *(("format", fmt) for fmt in args.format),
    ]


def _api_rows(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [{key: value for key, value in hit.items() if key not in PAGE_FIELDS} for hit in reply["hits"]]


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def format_hit(rank: int, hit: dict[str, Any]) -> str:
    """One result (a `Hit.to_dict()` row) as a person reads it: how well the sound matched (cosine of its
    best window), which of the query's words its name or metadata hold, then the file, where in it, and where
    in the example. The ranking's own score (a reciprocal-rank fusion value in hybrid mode) only orders the list."""
    audio_score = hit.get("audio_score")
    matched = hit.get("matched_terms") or []
    match = [f"{audio_score:.2f} audio"] if audio_score is not None else []
    if matched:
        match.append("words: " + ", ".join(matched))
    how = " · ".join(match) or f"score {hit['score']:.4f}"
    length = hit["duration_s"]
    where = ""
    if length and length > hit["end_s"] - hit["start_s"] + 0.01:
        where = f" at {_clock(hit['start_s'])}"
    query_start, query_end = hit.get("query_start_s"), hit.get("query_end_s")
    if query_start is not None and query_end is not None:
        where += f" (example {_clock(query_start)}-{_clock(query_end)})"
    tags = f"  [{', '.join(hit['tags'][:4])}]" if hit["tags"] else ""
    duration = f"{length:.1f}s" if length is not None else "?"
    return f"{rank:3d}. {how:<24}  {hit['path']}  ({duration} {hit['format'] or ''}){where}{tags}"


def _print_hits(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    """Hits as `Hit.to_dict()` rows, whichever way they were found."""
    if as_json:
        # One key order whichever way the hits came: the API lists its fields in an order of its own.
        print_json([dict(sorted(row.items())) for row in rows])
        return
    if not rows:
        print("no results")
    for i, h in enumerate(rows, 1):
        print(format_hit(i, h))


def run_search(args: argparse.Namespace) -> int:
    def ask(server: ServerClient) -> list[dict[str, Any]]:
        params = [("q", args.query), ("k", args.k), ("mode", args.mode), ("like", args.like)]
        params += [("like_weight", args.like_weight), *_filter_params(args)]
        return _api_rows(server.get("/api/search", params))

    # The API takes at most MAX_API_K results and an example by id only (not a file here).
    servable = args.k <= MAX_API_K and (args.like is None or not is_path_like(args.like))
    rows = through_server(args, ask) if servable else None
    if rows is None:
        engine = _engine(args)
        hits = engine.search(
            args.query, args.k, mode=args.mode, filters=_filters(args), like=args.like, like_weight=args.like_weight
        )
        engine.close()
        rows = [h.to_dict() for h in hits]
    _print_hits(rows, args.json)
    return 0


def run_similar(args: argparse.Namespace) -> int:
    def ask(server: ServerClient) -> list[dict[str, Any]]:
        return _api_rows(server.get(f"/api/files/{int(args.example)}/similar", [("k", args.k), *_filter_params(args)]))

    # A file path is read here: the server takes files by catalog id only.
    servable = args.k <= MAX_API_K and not is_path_like(args.example)
    rows = through_server(args, ask) if servable else None
    if rows is None:
        engine = _engine(args)
        hits = engine.similar(args.example, args.k, filters=_filters(args))
        engine.close()
        rows = [h.to_dict() for h in hits]
    _print_hits(rows, args.json)
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


def _classify_by_server(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """Each FILE uploaded to the server's /api/classify; None when the options ask for more than it offers
    (--library, --labels-file, --template, --model), a FILE cannot be read (the local path says why), or no
    server runs."""
    if not args.files or args.library or args.labels is None or args.template or args.model or args.save_as_tags:
        return None
    if not all(Path(name).is_file() for name in args.files):
        return None
    fields = [("labels", args.labels), ("multi_label", "true" if args.multi_label else "false")]

    def ask(server: ServerClient) -> list[dict[str, Any]]:
        replies = [server.post_form("/api/classify", fields, Path(name)) for name in args.files]
        return [{"path": r["source"], "labels": r["labels"][: max(1, args.top)]} for r in replies]

    return through_server(args, ask)


def _print_predictions(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    """Predictions as `Prediction.to_dict(top)` rows, whichever way they were made."""
    if as_json:
        print_json(list(rows))
        return
    for p in rows:
        print(p["path"])
        for entry in p["labels"]:
            bar = "█" * round(entry["score"] * 30)
            print(f"   {entry['score']:6.1%}  {bar:<30}  {entry['label']}")


def run_classify(args: argparse.Namespace) -> int:
    from indexer.errors import SoundsearchError

    if args.library == bool(args.files):
        raise SoundsearchError("give audio FILEs to classify, or --library (not both)")
    if args.save_as_tags and not args.library:
        raise SoundsearchError("--save-as-tags works with --library")
    rows = _classify_by_server(args)
    if rows is None:
        rows = _classify_here(args)
    _print_predictions(rows, args.json)
    return 0


def _classify_here(args: argparse.Namespace) -> list[dict[str, Any]]:
    from indexer.errors import SoundsearchError
    from search.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier, classify_library, parse_labels, tags_from

    if args.labels_file is not None:
        try:
            labels = parse_labels(lines=args.labels_file.read_text(encoding="utf-8").splitlines())
        except OSError as exc:
            raise SoundsearchError(f"cannot read labels file {args.labels_file}: {exc.strerror}") from None
    else:
        labels = parse_labels(args.labels)
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
    return [p.to_dict(top=max(1, args.top)) for p in predictions]
