"""The captioner trained on real recordings too: `build_default --real` on a tiny generated real library.

The library is laid out as `training.real_sounds` writes it (manifest.csv, library/<split>/<package>/...),
its weak captions come from file names and a WAV comment; the model is the tiny one of test_captioning.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks.eval_captioner import REAL_TEST_SPLITS, evaluate_real, shares_content_word
from captioning.build_default import REAL_MAX_WINDOWS, clip_source, default_config, real_clips
from captioning.captioner import load_captioner
from captioning.features import feature_extractor
from captioning.train import train_captioner
from indexer.audio import resample
from tests.test_captioning import SMALL_CFG, SR, tiny_mini, toy_clips
from training.build_mini3 import real_pairs
from training.clips import SAMPLE_RATE


def write_real_library(root: Path) -> None:
    """Three packages, one per split; the dev one has a clip five windows long (tiny mini: 2 s windows)."""
    rng = np.random.default_rng(0)
    files: dict[tuple[str, str], dict[str, tuple[float, str | None]]] = {
        ("train", "gamesounds"): {
            "sfx/creaky_door.wav": (1.0, None),
            "sfx/laser_zap.wav": (1.0, None),
            "ambience/amb01.wav": (1.5, "A rusty gate squeaks open."),
        },
        ("dev", "moresounds"): {"loops/foghorn_loop.wav": (10.0, None)},
        ("test", "heldoutsounds"): {"sounds/zeppelin.wav": (1.0, None)},
    }
    rows = []
    for (split, package), sounds in files.items():
        for name, (seconds, comment) in sounds.items():
            path = root / "library" / split / package / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
                if comment:
                    f.comment = comment
                f.write((0.2 * rng.standard_normal(int(seconds * SR))).astype(np.float32))
            rows.append({"package": package, "split": split, "licenses": "CC0", "path": str(path)})
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["package", "split", "licenses", "path"])
        writer.writeheader()
        writer.writerows(rows)


def test_real_train_and_dev_clips_join_training_with_their_words_and_windows(tmp_path: Path) -> None:
    write_real_library(tmp_path / "real")
    real = real_clips(tmp_path / "real", repeat=2)

    names = {Path(c.key).name: c.captions for c in real}
    assert set(names) == {"creaky_door.wav", "laser_zap.wav", "amb01.wav", "foghorn_loop.wav"}  # never test
    assert names["amb01.wav"] == ("A rusty gate squeaks open",) * 2  # each caption visited twice an epoch
    assert "creaky door" in names["creaky_door.wav"]
    with pytest.raises(ValueError, match="at least 1"):
        real_clips(tmp_path / "real", repeat=0)

    synth, audio = toy_clips(8)  # the synthetic side, 16 kHz as training.clips renders it
    cfg = default_config(with_real=True)
    assert cfg.max_windows == REAL_MAX_WINDOWS and cfg.vocab_min_count == 1
    cfg = replace(SMALL_CFG, epochs=1, vocab_size=200, max_windows=cfg.max_windows, vocab_min_count=cfg.vocab_min_count)
    extractor = feature_extractor(tiny_mini())
    source = clip_source({k: resample(a, SR, SAMPLE_RATE) for k, a in audio.items()})
    said: list[str] = []
    result = train_captioner(
        extractor, "mini", "small", synth[:6] + real, synth[6:], tmp_path / "run", cfg,
        source=source, progress=said.append, feature_cache=tmp_path / "features",
    )  # fmt: skip

    captioner = load_captioner(result.best_dir, encoder=tiny_mini())
    assert captioner.spec.max_windows == REAL_MAX_WINDOWS
    vocab = captioner.model.tokenizer.get_vocab()
    # One-off words of the real names and comment are in the vocabulary, not [UNK].
    assert {"creaky", "laser", "zap", "rusty", "gate", "foghorn"} <= set(vocab)
    assert "zeppelin" not in vocab
    # The benchmark captions exactly the test packages' files, as whole files, and scores them.
    scored = evaluate_real(captioner, real_pairs(tmp_path / "real", REAL_TEST_SPLITS), meteor=False)
    assert [Path(k).name for k in scored["captions"]] == ["zeppelin.wav"]
    assert scored["scores"]["n_clips"] == 1 and scored["content_word_hit_rate"] in (0.0, 1.0)
    assert list(scored["per_package"]) == ["heldoutsounds"] and scored["per_package"]["heldoutsounds"]["n_files"] == 1
    train = synth[:6] + real
    cached = [torch.load(f, weights_only=True) for f in (tmp_path / "features").glob("*.pt")]
    (train_tokens,) = [c for c in cached if len(c) == len(train)]  # one file per clip list: training's
    tokens = {c.key: t for c, t in zip(train, train_tokens, strict=True)}
    short, long = (tokens[next(c.key for c in real if name in c.key)] for name in ("creaky", "foghorn"))
    assert long.shape[0] == REAL_MAX_WINDOWS * short.shape[0]  # 10 s at 2 s windows: 3 of 5, evenly spread

    # A rerun on the same clips takes the features from the cache, and they are the same tokens.
    said.clear()
    rerun = train_captioner(
        extractor, "mini", "small", train, synth[6:], tmp_path / "rerun", cfg,
        source=source, progress=said.append, feature_cache=tmp_path / "features",
    )  # fmt: skip
    assert sum("from" in m and "features" in m for m in said) == 2
    assert rerun.history.epochs[0]["loss"] == pytest.approx(result.history.epochs[0]["loss"])

    # An edited file's features are computed again: the training clips' cache no longer answers.
    edited = next(Path(c.key) for c in real if "laser" in c.key)
    sf.write(edited, np.full(SR // 2, 0.1, dtype=np.float32), SR)
    said.clear()
    train_captioner(
        extractor, "mini", "small", train, synth[6:], tmp_path / "edited", cfg,
        source=source, progress=said.append, feature_cache=tmp_path / "features",
    )  # fmt: skip
    assert sum("from" in m and "features" in m for m in said) == 1  # the validation clips' only


def test_content_word_hit_ignores_stopwords_and_numbers() -> None:
    assert shares_content_word("a creaky door opens", ("creaky door", "door, gamesounds sfx"))
    assert not shares_content_word("a bird sings in the trees", ("the wind in 01",))
    assert not shares_content_word("sound 01", ("bird5 01",))
