from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from evaluation.datasets import DatasetError
from training.data import Pair, load_pairs
from training.loop import TrainConfig, prepare, train, validate
from training.models import ClapTrainable, MiniTrainable

SR = 16_000
WORDS = ["low rumble", "high whistle", "rapid clicks", "soft hiss", "bright chime", "deep hum"]


def _clip(i: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    gen = np.random.default_rng(i)
    if i % 3 == 2:  # clicks
        x = (gen.random(len(t)) < 0.002).astype(np.float32) * 0.8
    else:
        x = 0.4 * np.sin(2 * np.pi * (150 + 900 * (i % 6)) * t)
    return (x + 0.01 * gen.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    rows = ["path,caption"]
    for i in range(12):
        sf.write(root / f"c{i}.wav", _clip(i), SR)
        rows.append(f"c{i}.wav,{WORDS[i % 6]} number {i}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root / "captions.csv"


@pytest.fixture(scope="module")
def mini() -> MiniTrainable:
    return MiniTrainable.create("scratch")


def test_short_training_run_lowers_the_loss_and_writes_artifacts(
    mini: MiniTrainable, dataset: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    fresh = MiniTrainable(type(mini.model)(mini.model.cfg), mini.sentences)
    pairs = load_pairs(str(dataset))
    cfg = TrainConfig(
        epochs=8, batch_size=10, lr=3e-3, warmup_steps=1, val_fraction=0.2, spec_augment=False, mix_probability=0.0
    )
    history = train(fresh, pairs, tmp_path, cfg)
    losses = [h["loss"] for h in history.epochs]
    assert losses[-1] < losses[0]
    assert (tmp_path / "best" / "mini.safetensors").is_file() and (tmp_path / "curves.png").is_file()
    from indexer import load_encoder

    encoder = load_encoder(str(tmp_path / "best"))  # a trained mini folder is a model spec
    assert encoder.embed_audio([_clip(0)]).shape == (1, 256)


def test_resume_equals_an_uninterrupted_run(mini: MiniTrainable, dataset: Path, tmp_path: Path) -> None:
    pairs = load_pairs(str(dataset))
    cfg = TrainConfig(epochs=3, batch_size=5, warmup_steps=1, val_fraction=0.2)

    def fresh() -> MiniTrainable:
        torch.manual_seed(1)
        return MiniTrainable(type(mini.model)(mini.model.cfg), mini.sentences)

    whole = fresh()
    train(whole, pairs, tmp_path / "whole", cfg)
    interrupted = fresh()
    train(interrupted, pairs, tmp_path / "split", cfg, stop_after_epoch=1)
    resumed = fresh()  # a new process would start from scratch weights, then load the checkpoint
    history = train(resumed, pairs, tmp_path / "split", cfg)
    assert len(history.epochs) == 3
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_fine_tuning_a_hugging_face_clap_raises_its_recall(tiny_clap_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rows = ["path,caption"]
    for i in range(8):
        t = np.arange(48_000) / 48_000
        sf.write(root / f"t{i}.wav", (0.4 * np.sin(2 * np.pi * (200 + 700 * i) * t)).astype(np.float32), 48_000)
        rows.append(f"t{i}.wav,tone number {i} {'abcdefgh'[i] * 3}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    pairs = load_pairs(str(root / "captions.csv"))
    trainable = ClapTrainable(str(tiny_clap_dir))
    data = prepare(trainable, pairs)

    def mean_r1() -> float:  # both directions: a random tiny tower moves one before the other
        m = validate(trainable, data)
        return (m["t2a_R@1"] + m["a2t_R@1"]) / 2

    before = mean_r1()
    cfg = TrainConfig(
        epochs=25, batch_size=8, lr=2e-3, warmup_steps=1, val_fraction=0.0, spec_augment=False, mix_probability=0.0
    )
    train(trainable, pairs + pairs[:0], tmp_path / "out", cfg, progress=None)
    after = mean_r1()
    assert after > before, (before, after)
    assert (tmp_path / "out" / "best" / "config.json").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,caption\nmissing.wav,a sound\n", "row 2"),
        ("path,caption\nc0.wav,\n", "row 2"),
        ("file,text\nc0.wav,a sound\n", "missing column"),
    ],
)
def test_bad_caption_csv_names_the_row(dataset: Path, tmp_path: Path, content: str, message: str) -> None:
    bad = dataset.parent / f"bad_{abs(hash(content))}.csv"
    bad.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_pairs(str(bad))


def test_keyword_captions_are_positives_of_every_clip_carrying_them(mini: MiniTrainable, tmp_path: Path) -> None:
    from training.data import Pair
    from training.loop import positives_for

    for i in range(4):
        sf.write(tmp_path / f"k{i}.wav", _clip(i), SR)
    labels = [("dog",), ("dog", "rain"), ("rain",), ()]
    pairs = [Pair(tmp_path / f"k{i}.wav", (f"caption {i}",), labels[i], labels[i][:1]) for i in range(len(labels))]
    data = prepare(mini, pairs)
    n_caps = len(data.caption_owner)
    assert n_caps == 4 and data.clip_keywords.shape == (4, 2)  # keywords "dog", "rain" (foreground only)
    clips = np.arange(4)
    dog, rain = n_caps, n_caps + 1
    texts = np.array([0, dog, rain, 3])  # clip 0's caption, the "dog" and "rain" keywords, clip 3's caption
    got = positives_for(data, clips, texts).numpy()
    expected = np.array(
        [
            [True, True, False, False],  # clip 0 (dog): its caption, "dog"
            [False, True, False, False],  # clip 1 (dog over rain): "dog" only; "rain" is its background
            [False, False, True, False],  # clip 2 (rain)
            [False, False, False, True],  # clip 3 (no labels): its own caption only
        ]
    )
    np.testing.assert_array_equal(got, expected)


def test_synthetic_library_pairs_carry_the_foreground_class_as_keyword(tmp_path: Path) -> None:
    from evaluation.synth import generate_library

    generate_library(tmp_path, n=6, seed=3, max_duration_s=2.0, progress=False)
    pairs = load_pairs(str(tmp_path))
    assert all(len(p.keywords) == 1 and p.keywords[0] in p.classes for p in pairs)


def test_two_tower_head_trains_on_cached_frozen_features(mini: MiniTrainable, tmp_path: Path) -> None:
    """mini@3's recipe in miniature: frozen aiSFX + CNN towers, features computed once into the cache, only the
    head and text projection learn, and the saved folder loads as an encoder."""
    from indexer import load_encoder

    trainable = _two_tower(mini)
    towers = {k: v.clone() for k, v in trainable.model.state_dict().items() if k.startswith(("aisfx.", "audio."))}
    head = trainable.model.head[1].weight.detach().clone()
    pairs = _tones(tmp_path / "data")
    run_cfg = TrainConfig(epochs=3, batch_size=4, warmup_steps=1, val_fraction=0.34)
    train(trainable, pairs, tmp_path / "run", run_cfg)
    assert (tmp_path / "run" / "features.pt").is_file()
    state = trainable.model.state_dict()
    for k, v in towers.items():
        torch.testing.assert_close(state[k], v, msg=k)  # frozen, BatchNorm statistics included
    assert not torch.equal(trainable.model.head[1].weight, head)

    calls = 0
    original = trainable.features

    def counting(clip: np.ndarray) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return original(clip)

    trainable.features = counting  # type: ignore[method-assign]
    train(trainable, pairs, tmp_path / "run", TrainConfig(epochs=4, batch_size=4, warmup_steps=1, val_fraction=0.34))
    assert calls == 0  # the second run (resumed here) reads every clip from the cache
    encoder = load_encoder(str(tmp_path / "run" / "best"))
    emb = encoder.embed_audio([np.zeros(1000, dtype=np.float32) + 0.01, _clip(1, seconds=3.0)])
    assert emb.shape == (2, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def _two_tower(mini: MiniTrainable, acoustic_share: float = 0.0) -> MiniTrainable:
    """A two-tower mini (mini@3's architecture) with a tiny CNN tower, random weights, seed 0."""
    from indexer.encoders.mini import MiniClap, MiniConfig

    torch.manual_seed(0)
    cfg = MiniConfig(
        sample_rate=44_100,
        cnn_rate=8_000,
        audio_tower="aisfx+cnn",
        window_s=2.0,
        n_fft=256,
        hop_length=128,
        f_max=4_000,
        channels=(4, 8),
        embed_dim=16,
        acoustic_share=acoustic_share,
    )
    return MiniTrainable(MiniClap(cfg), mini.sentences)


def _tones(root: Path, n: int = 6) -> list[Pair]:
    root.mkdir()
    rows = ["path,caption"]
    for i in range(n):
        t = np.arange(22_050) / 44_100
        sf.write(root / f"t{i}.wav", (0.4 * np.sin(2 * np.pi * (200 + 900 * i) * t)).astype(np.float32), 44_100)
        rows.append(f"t{i}.wav,{WORDS[i % 6]}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return load_pairs(str(root / "captions.csv"))


def test_anchored_clips_stay_near_the_untrained_embedding(mini: MiniTrainable, tmp_path: Path) -> None:
    """`TrainConfig.anchor` holds the clips `anchored` picks (the synthetic library in build_mini3) where the
    untrained head put them, so training on real recordings does not undo what mini@2 knew of those."""
    pairs = _tones(tmp_path / "data")
    anchored = {str(p.path) for p in pairs[::2]}
    drift = {}
    for weight in (0.0, 100.0):
        trainable = _two_tower(mini)
        cfg = TrainConfig(epochs=4, batch_size=6, lr=1e-2, warmup_steps=1, anchor=weight)
        train(
            trainable,
            pairs,
            tmp_path / f"run{weight}",
            cfg,
            val_pairs=pairs,
            anchored=lambda p: str(p.path) in anchored,
        )
        trainable.modules().eval()
        features = torch.stack([trainable.features(sf.read(p.path, dtype="float32")[0])[:1] for p in pairs])
        with torch.no_grad():
            per_clip = trainable.drift(features)
        drift[weight] = per_clip[::2].mean().item(), per_clip[1::2].mean().item()
    assert drift[0.0][0] > 0.01  # without the anchor, training moved them
    assert drift[100.0][0] < 0.1 * drift[0.0][0]  # the anchored clips barely moved


def test_the_acoustic_block_leaves_text_ranks_and_adds_to_sound_likeness(mini: MiniTrainable, tmp_path: Path) -> None:
    """An audio vector = √(1−s)·joint ⊕ √s·(the standardised aiSFX view); a text vector leaves the block at
    zero. Text → audio order and zero-shot probabilities are those of the joint space; sound → sound is not."""
    from indexer.encoders.mini import MiniEncoder, load_mini, save_mini, with_acoustic_block
    from search.zeroshot import ZeroShotClassifier

    plain = _two_tower(mini).model.eval()
    clips = [sf.read(p.path, dtype="float32")[0] for p in _tones(tmp_path / "data")]
    features = torch.cat([plain.window_features([c], torch.device("cpu")) for c in clips])
    share = 0.5
    model = with_acoustic_block(plain, features[:, 512:1024], share)
    save_mini(model, tmp_path / "m")
    encoder, joint = load_mini(tmp_path / "m", device="cpu"), MiniEncoder(plain, mini.sentences)
    assert (encoder.dim, joint.dim) == (16 + 512, 16)
    audio, text = encoder.embed_audio(clips), encoder.embed_text(WORDS)
    assert np.allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5) and not text[:, 16:].any()
    plain_audio, plain_text = joint.embed_audio(clips), joint.embed_text(WORDS)
    np.testing.assert_allclose(text @ audio.T, (plain_text @ plain_audio.T) * share**0.5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(audio[:, 16:], axis=1), share**0.5, atol=1e-5)
    same_sound = audio @ audio.T - (plain_audio @ plain_audio.T) * (1 - share)
    assert not np.allclose(same_sound, 0.0, atol=1e-3)  # the block adds the pretrained tower's likeness
    paths = [f"t{i}" for i in range(len(clips))]
    for enc, vectors in ((encoder, audio), (joint, plain_audio)):
        predictions = ZeroShotClassifier(enc, WORDS).predict_vectors(paths, vectors, np.arange(len(clips)))
        if enc is encoder:
            with_block = [p.scores for p in predictions]
        else:
            for got, want in zip(with_block, [p.scores for p in predictions], strict=True):
                assert [label for label, _ in got] == [label for label, _ in want]
                np.testing.assert_allclose([v for _, v in got], [v for _, v in want], atol=1e-4)
