"""`soundsearch tagger train|eval|apply|list|enable|disable`: supervised tagging heads on stored embeddings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.commands.common import add_catalog_options, open_catalog, print_json
from indexer.errors import SoundsearchError


def register(sub: Any) -> None:
    parser = sub.add_parser("tagger", help="train a tagger on your labels and tag the library with it")
    tsub = parser.add_subparsers(dest="tagger_command", required=True, metavar="ACTION")

    p = tsub.add_parser("train", help="train a head on labelled indexed files and save it in the catalog")
    _add_label_source(p)
    p.add_argument("--out", required=True, metavar="NAME", help="name to save the tagger under")
    _add_training_options(p)
    p.add_argument("--enable", action="store_true", help="also tag new and changed files at index time")
    p.add_argument("--finetune-encoder", action="store_true", help="fine-tune the audio encoder's last layers too")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_train)

    p = tsub.add_parser("eval", help="evaluate a saved tagger on labelled files, or cross-validate a setup")
    p.add_argument("name", nargs="?", metavar="NAME", help="saved tagger (omit with --folds)")
    _add_label_source(p)
    p.add_argument("--folds", type=int, metavar="K", help="k-fold cross-validation of the training options")
    _add_training_options(p)
    p.add_argument("--png", type=Path, metavar="FILE", help="draw the confusion matrix into this PNG")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_eval)

    p = tsub.add_parser("apply", help="tag files with a saved tagger (tags are stored in the catalog)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("files", nargs="*", metavar="FILE", help="files to tag (indexed ones get their tags stored)")
    p.add_argument("--library", action="store_true", help="tag every indexed file")
    p.add_argument("--model", help="model spec for files outside the catalog (default: the catalog's model)")
    p.add_argument(
        "--write-tags", action="store_true", help="also write the tagged files' tags and captions into the files"
    )
    p.add_argument("--json", action="store_true", help='print [{"path", "tags": [{"label", "score"}]}]')
    add_catalog_options(p)
    p.set_defaults(run=run_apply)

    p = tsub.add_parser("list", help="saved taggers")
    p.add_argument("--json", action="store_true")
    add_catalog_options(p)
    p.set_defaults(run=run_list)

    for action, enabled in (("enable", True), ("disable", False)):
        p = tsub.add_parser(action, help=f"{action} tagging of new and changed files at index time")
        p.add_argument("name", metavar="NAME")
        add_catalog_options(p)
        p.set_defaults(run=run_enable, enabled=enabled)


def _add_label_source(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, metavar="CSV", help="CSV with header `path,label` (';' joins labels)")
    source.add_argument("--from-folders", type=Path, metavar="DIR", help="a sub-folder per class")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    from search.tagger_config import POOLINGS, TrainConfig

    d = TrainConfig()
    p.add_argument("--multi-label", action="store_true", help="several labels per file (sigmoid + BCE)")
    p.add_argument("--hidden", type=int, default=d.hidden, metavar="N", help="0: linear head; N: plus an MLP")
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=d.pooling,
        help="file: mean vector; mil: max over segments; mean: mean of segment scores",
    )
    p.add_argument("--zero-shot-init", action="store_true", help="start from the label names' text embeddings")
    p.add_argument("--epochs", type=int, default=d.max_epochs, metavar="N", help="most epochs (early stopping)")
    p.add_argument("--mixup", type=float, default=d.mixup_alpha, metavar="ALPHA", help="mixup Beta(α, α); 0: off")
    p.add_argument(
        "--weight-decay",
        type=float,
        metavar="L2",
        help="how strongly the head is held to its start (default: chosen on the validation split)",
    )
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F", help="validation split")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--model", help="model spec for --zero-shot-init (default: the catalog's model)")


def _config(args: argparse.Namespace) -> Any:
    from search.tagger_config import TrainConfig

    return TrainConfig(
        multi_label=args.multi_label,
        hidden=args.hidden,
        pooling=args.pooling,
        zero_shot_init=args.zero_shot_init,
        max_epochs=args.epochs,
        mixup_alpha=args.mixup,
        weight_decay=args.weight_decay,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )


def _labelled(args: argparse.Namespace) -> Any:
    from search.tagger_data import labels_from_folders, read_labels_csv

    return read_labels_csv(args.labels) if args.labels is not None else labels_from_folders(args.from_folders)


def run_train(args: argparse.Namespace) -> int:
    from search.tagger import check_finetune, save_tagger, train_tagger

    config = _config(args)
    config.check()
    labelled = _labelled(args)
    with open_catalog(args) as catalog:
        encoder = None
        if args.finetune_encoder or config.zero_shot_init:
            encoder = catalog.load_encoder(args.model)
        if args.finetune_encoder:
            assert encoder is not None
            check_finetune(encoder)
        tagger, validation = train_tagger(catalog, labelled, args.out, config, encoder=encoder)
        path = save_tagger(catalog, tagger, enabled=True if args.enable else None)
    if args.json:
        print_json({**tagger.info.to_dict(), "saved": str(path), "validation_report": validation.to_dict()})
        return 0
    info, trained = tagger.info, tagger.info.trained or {}
    kind = "linear head" if info.hidden == 0 else f"MLP head ({info.hidden} hidden)"
    print(
        f"trained tagger {info.name!r}: {len(info.labels)} labels, {'multi' if info.multi_label else 'single'}-label, "
        f"{kind}, {info.pooling} pooling; {trained.get('train_files')} training / {trained.get('val_files')} "
        f"validation files, {trained.get('epochs')} epochs (best {trained.get('best_epoch')})"
    )
    print(f"validation: {_headline(validation)}")
    print(f"saved {path}" + (" (enabled at index time)" if info.enabled else ""))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from search.tagger import cross_validate, evaluate_tagger, load_tagger
    from search.tagger_metrics import plot_confusion

    if (args.name is None) == (args.folds is None):
        raise SoundsearchError("give a tagger NAME to evaluate, or --folds K to cross-validate the training options")
    labelled = _labelled(args)
    with open_catalog(args, writable=False) as catalog:
        if args.name is not None:
            report = evaluate_tagger(catalog, load_tagger(catalog, args.name), labelled)
            payload = report.to_dict()
        else:
            config = _config(args)
            encoder = catalog.load_encoder(args.model) if config.zero_shot_init else None
            cv = cross_validate(catalog, labelled, config, args.folds, encoder=encoder)
            report, payload = cv.report, cv.to_dict()
    if args.png is not None:
        payload["confusion_png"] = str(plot_confusion(report, args.png))
    if args.json:
        print_json(payload)
        return 0
    what = f"tagger {args.name!r}" if args.name else f"{args.folds}-fold cross-validation"
    print(f"{what} on {report.n_files} files: {_headline(report)}")
    if "fold_accuracy" in payload:
        print("per-fold accuracy: " + ", ".join(f"{a:.1%}" for a in payload["fold_accuracy"]))
    width = max(len(c.label) for c in report.per_class)
    print(f"  {'label':<{width}}  support  precision  recall     F1     AP")
    for c in report.per_class:
        ap = "     -" if c.average_precision is None else f"{c.average_precision:6.3f}"
        print(f"  {c.label:<{width}}  {c.support:7d}  {c.precision:9.3f}  {c.recall:6.3f}  {c.f1:5.3f}  {ap}")
    if args.png is not None:
        print(f"confusion matrix: {payload['confusion_png']}")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from search.tagger import apply_tagger, load_tagger, tag_paths, with_paths

    if args.library == bool(args.files):
        raise SoundsearchError("give FILEs to tag, or --library (not both)")
    writes = None
    with open_catalog(args) as catalog:
        tagger = load_tagger(catalog, args.name)
        if args.library:
            tagged = apply_tagger(catalog, tagger)
            results = with_paths(catalog, tagged) if args.json else []
            file_ids = list(tagged)
        else:
            indexed = {str(f.path) for f in catalog.files(status="ok")}
            outside = [f for f in args.files if str(Path(f).expanduser().absolute()) not in indexed]
            encoder = catalog.load_encoder(args.model) if outside else None
            results = tag_paths(catalog, tagger, args.files, encoder)
            file_ids = [r.file_id for r in results if r.file_id is not None]
        if args.write_tags:
            from search.writeback import known_fields, write_back

            writes = write_back(catalog, known_fields(catalog, file_ids))
    code = 1 if writes is not None and writes.errors else 0
    if args.json:
        files = [r.to_dict() for r in results]
        print_json(files if writes is None else {"files": files, "tags": writes.to_dict()})
        return code
    if args.library:
        n_tags = sum(len(tags) for tags in tagged.values())
        print(f"tagged {len(tagged)} file(s) with {n_tags} tag(s) from {tagger.source!r}")
    else:
        for r in results:
            print(r.path + ("" if r.file_id is not None else "  (not indexed: tags not stored)"))
            for label, score in r.tags:
                print(f"   {score:6.1%}  {label}")
            if not r.tags:
                print("   (no label above its threshold)")
    if writes is not None:
        from api.commands.write_tags import print_write_report

        print_write_report(writes)
    return code


def run_list(args: argparse.Namespace) -> int:
    from search.tagger import list_taggers

    with open_catalog(args, writable=False) as catalog:
        infos = list_taggers(catalog)
    if args.json:
        print_json([{k: v for k, v in info.to_dict().items() if k != "thresholds"} for info in infos])
        return 0
    if not infos:
        print("no taggers (train one with `soundsearch tagger train`)")
    for info in infos:
        mode = "multi-label" if info.multi_label else "single-label"
        state = "enabled" if info.enabled else "disabled"
        print(f"{info.name}  {len(info.labels)} labels, {mode}, {info.pooling} pooling, {info.model_id}, {state}")
    return 0


def run_enable(args: argparse.Namespace) -> int:
    from search.tagger import set_enabled

    with open_catalog(args) as catalog:
        set_enabled(catalog, args.name, args.enabled)
    print(f"tagger {args.name!r} {'enabled' if args.enabled else 'disabled'} at index time")
    return 0


def _headline(report: Any) -> str:
    return f"accuracy {report.accuracy:.1%}, macro-F1 {report.macro_f1:.3f}, mAP {report.mean_average_precision:.3f}"
