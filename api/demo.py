"""`make demo`: generate a small sound library, index it with the default model (`mini`), and show
text search, search by example, zero-shot classification and a caption.

The library is procedurally generated (a seed the model never saw in training), so everything runs
offline on a fresh machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from api.commands.search import format_hit
from api.progress import TqdmProgress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="where the library and catalog go")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--model", default=None, help="model spec (default: the built-in default)")
    args = parser.parse_args(argv)

    from evaluation.synth import generate_library
    from indexer import load_encoder
    from indexer.encoders.registry import DEFAULT_MODEL
    from indexer.errors import SoundsearchError
    from indexer.pipeline import index_paths
    from search.engine import Engine
    from search.zeroshot import ZeroShotClassifier
    from storage.catalog import Catalog

    t0 = time.perf_counter()
    library, home = args.dir / "library", args.dir / "catalog"
    shutil.rmtree(args.dir, ignore_errors=True)
    print(f"1. Generating {args.clips} sounds with captions into {library} ...")
    generate_library(library, args.clips, seed=31, max_duration_s=20.0, progress=sys.stderr.isatty())

    model = args.model or DEFAULT_MODEL
    if model == "tiny-random":
        print("\n   NOTE: 'tiny-random' is an untrained model: the rankings below are NOT meaningful.")
    encoder = load_encoder(model)
    print(f"\n2. Indexing with {encoder.model_id} (dim {encoder.dim}) into {home} ...")
    with Catalog.open(home) as catalog:
        summary = index_paths(catalog, encoder, [library], progress=TqdmProgress())
        print(
            f"   {summary.added} files, {summary.segments} segments, {summary.failed} failed, {summary.seconds:.1f} s"
        )
        engine = Engine(catalog, encoder)

        for query in ("a siren passing in the distance", "drizzle on a window", "glass shattering"):
            print(f'\n3. Search: "{query}"')
            for i, hit in enumerate(engine.search(query, k=3), 1):
                print(format_hit(i, hit.to_dict()))

        example = catalog.files()[0].path
        print(f"\n4. Sounds like {example.relative_to(library.absolute())}:")
        for i, hit in enumerate(engine.similar(example, k=3), 1):
            print(format_hit(i, hit.to_dict()))

        labels = ["siren", "rain", "helicopter", "applause", "thunder", "footsteps"]
        print(f"\n5. Zero-shot classification of {example.name} against {labels}:")
        (prediction,) = ZeroShotClassifier(encoder, labels).predict_files([example])
        for label, p in prediction.scores:
            print(f"   {p:6.1%}  {label}")

        print(f"\n6. Caption of {example.name}:")
        try:
            from captioning.captioner import load_captioner

            print(f"   {load_captioner(encoder=encoder).caption(example)}")
        except SoundsearchError as exc:
            print(f"   (no caption: {exc})")

    print(
        "\nAbout the offline model: `mini` knows these synthetic sound classes well and real recordings only"
        "\nroughly (broad categories, search by example). On your own library, fine-tune it on the files' names"
        "\n(`soundsearch train-encoder --data LIBRARY --captions-from-metadata --out runs/mine`), or use"
        "\nLAION-CLAP weights for the best quality (`--model laion/clap-htsat-unfused`, see the README)."
    )
    print(f"\nDone in {time.perf_counter() - t0:.0f} s. Try it yourself:")
    print(f'   .venv/bin/soundsearch search "a dog barking far away" --home {home}')
    print(f"   .venv/bin/soundsearch serve --home {home}      # then open http://127.0.0.1:8000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
