"""`soundsearch caption` and `soundsearch captioner train|eval|get-spice`: captions for sounds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api.commands.common import print_json


def _decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beams", type=int, default=None, help="beam width (1 = greedy; default: the model's, 3)")
    p.add_argument("--no-repeat-ngram", type=int, default=None, metavar="N", help="never repeat an N-gram")
    p.add_argument("--min-length", type=int, default=None, help="minimum caption length in tokens")
    p.add_argument("--max-length", type=int, default=None, help="maximum caption length in tokens")


def register(sub: Any) -> None:
    p = sub.add_parser("caption", help="write a caption for audio files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--captioner", help="captioner folder (default: the shipped offline captioner)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument(
        "--whole-max", type=float, default=30.0, metavar="SECONDS",
        help="files up to this long get one caption; longer ones one per time-stamped segment (default: 30)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help='a JSON list of {"path", "caption", ...}')
    _decode_options(p)
    p.set_defaults(run=run_caption)

    group = sub.add_parser("captioner", help="train and evaluate captioning models")
    csub = group.add_subparsers(dest="captioner_command", required=True, metavar="ACTION")
    t = csub.add_parser("train", help="train a captioner on audio + captions")
    t.add_argument("--data", required=True, help="KIND:ROOT (audiocaps, clotho, wavcaps, synth, csv), a folder or CSV")
    t.add_argument("--split", help="the dataset split to train on (e.g. development, train)")
    t.add_argument("--val-data", help="validation data (default: a seeded 10%% of --data)")
    t.add_argument("--val-split", help="split of --val-data (e.g. validation, val)")
    t.add_argument("--encoder", default="mini", help="audio encoder spec (default: mini)")
    t.add_argument("--decoder", default="small", help="small (from scratch), or a GPT-2/BART hub id or folder")
    t.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, best/, curves.png)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=None, help="default: 5e-4 from scratch, 5e-5 for a pretrained decoder")
    t.add_argument(
        "--fine-tune-encoder",
        action="store_true",
        help="train the audio encoder too (lr 2e-5); not a two-tower mini, whose towers stay frozen",
    )
    t.add_argument("--max-windows", type=int, default=3, help="10 s windows of a clip the model sees (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--skip-missing", action="store_true", help="train on the clips whose audio exists")
    t.add_argument("--spice-dir", help="folder holding the Stanford CoreNLP 3.6.0 jars for SPICE")
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    t.add_argument("--device", help="torch device for the encoder")
    t.set_defaults(run=run_train)

    e = csub.add_parser("eval", help="caption a dataset and score it (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr)")
    e.add_argument("--data", required=True, help="KIND:ROOT, a synthetic library folder or a path,caption CSV")
    e.add_argument("--split", help="dataset split (e.g. evaluation, test)")
    e.add_argument("--captioner", help="captioner folder (default: the shipped one)")
    e.add_argument("--limit", type=int, help="only the first N clips")
    e.add_argument("--spice-dir", help="folder holding the Stanford CoreNLP 3.6.0 jars for SPICE")
    e.add_argument("--no-meteor", action="store_true", help="skip METEOR")
    e.add_argument("--out", type=Path, help="also write the captions and scores as JSON here")
    e.add_argument("--json", action="store_true")
    e.add_argument("--device")
    _decode_options(e)
    e.set_defaults(run=run_eval)

    g = csub.add_parser("get-spice", help="download the Stanford CoreNLP 3.6.0 jars SPICE needs (once, ~390 MB)")
    g.add_argument("--dir", type=Path, help="where to put them (default: the per-user data folder)")
    g.set_defaults(run=run_get_spice)


def _decode(args: argparse.Namespace, default: Any) -> Any:
    from dataclasses import replace

    changes = {
        k: v
        for k, v in (
            ("num_beams", args.beams),
            ("no_repeat_ngram_size", args.no_repeat_ngram),
            ("min_length", args.min_length),
            ("max_length", args.max_length),
        )
        if v is not None
    }
    return replace(default, **changes)


def run_caption(args: argparse.Namespace) -> int:
    from captioning.captioner import load_captioner
    from indexer.errors import SoundsearchError

    captioner = load_captioner(args.captioner, device=args.device)
    decode = _decode(args, captioner.decode)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in args.files:
        try:
            results.append(captioner.caption_file(path, whole_max_s=args.whole_max, decode=decode).to_dict())
        except SoundsearchError as exc:
            # One unreadable file never hides the captions of the others; the exit code says something failed.
            failed += 1
            results.append({"path": path, "caption": None, "error": str(exc)})
    if args.json:
        print_json(results)
    else:
        for r in results:
            if r["caption"] is None:
                print(f"{r['path']}: ERROR {r['error']}", file=sys.stderr)
                continue
            print(f"{r['path']}: {r['caption']}")
            for seg in r["segments"]:
                print(f"    {seg['start_s']:8.1f}-{seg['end_s']:8.1f} s  {seg['caption']}")
    return 1 if failed else 0


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from captioning.data import load_caption_data, split_clips
    from captioning.features import feature_extractor
    from captioning.store import SMALL
    from captioning.train import CaptionTrainConfig, train_captioner
    from indexer.encoders.registry import load_encoder

    clips = load_caption_data(args.data, split=args.split, skip_missing=args.skip_missing)
    if args.val_data:
        train_clips = clips
        val_clips = load_caption_data(args.val_data, split=args.val_split, skip_missing=args.skip_missing)
    else:
        train_clips, val_clips = split_clips(clips, 0.1, args.seed)
    lr = args.lr if args.lr is not None else (5e-4 if args.decoder == SMALL else 5e-5)
    cfg = CaptionTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        seed=args.seed,
        fine_tune_encoder=args.fine_tune_encoder,
        max_windows=args.max_windows,
        spice_dir=args.spice_dir,
    )
    extractor = feature_extractor(load_encoder(args.encoder, device=args.device))
    steps = -(-sum(len(c.captions) for c in train_clips) // cfg.batch_size)
    bar = tqdm(total=steps * cfg.epochs, unit="step", desc="training", disable=not sys.stderr.isatty())

    def on_step(epoch: int, step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"epoch {epoch + 1} loss {loss:.3f}", refresh=False)

    result = train_captioner(
        extractor, args.encoder, args.decoder, train_clips, val_clips, args.out, cfg,
        resume=not args.no_resume, progress=bar.write, on_step=on_step,
    )  # fmt: skip
    bar.close()
    best = result.best
    print(f"best captioner: {result.best_dir} (epoch {best['epoch']}, by {best['selected_by']})")
    print(f"curves: {args.out / 'curves.png'}   history: {args.out / 'history.json'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from captioning.captioner import load_captioner
    from captioning.data import decode_file, load_caption_data
    from captioning.metrics import caption_metrics

    clips = load_caption_data(args.data, split=args.split)
    if args.limit:
        clips = clips[: args.limit]
    captioner = load_captioner(args.captioner, device=args.device)
    decode = _decode(args, captioner.decode)
    sr = captioner.extractor.sample_rate
    predictions: list[str] = []
    for start in range(0, len(clips), 32):
        audio = [decode_file(c.key, sr) for c in clips[start : start + 32]]
        predictions += captioner.caption_clips(audio, decode)
    scores = caption_metrics(
        predictions, [c.captions for c in clips], meteor=not args.no_meteor, spice_dir=args.spice_dir
    )
    payload = {"captioner": captioner.model_id, "data": args.data, "scores": scores.to_dict()}
    if args.out:
        rows = [
            {"path": c.key, "caption": p, "references": list(c.captions)}
            for c, p in zip(clips, predictions, strict=True)
        ]
        args.out.write_text(json.dumps({**payload, "captions": rows}, indent=2) + "\n")
    if args.json:
        print_json(payload)
    else:
        print(f"{len(clips)} clips: {scores.summary()}")
        print(f"references: vocab {scores.reference_vocab_size}, mean length {scores.reference_mean_length:.1f}")
    return 0


def run_get_spice(args: argparse.Namespace) -> int:
    from captioning.spice import CORENLP_URL, download_corenlp

    print(f"downloading {CORENLP_URL} (about 390 MB) ...", file=sys.stderr)
    folder = download_corenlp(args.dir)
    print(f"SPICE jars in {folder}; pass --spice-dir {folder} or set SOUNDSEARCH_SPICE_DIR if not the default")
    return 0
