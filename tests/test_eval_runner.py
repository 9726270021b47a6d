"""End-to-end evaluation: real WAV files, the real loaders and decoder, a fake encoder with known vectors
(so every metric is computable by hand), and the `soundsearch eval` command."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from api.commands import eval as eval_cmd
from evaluation.datasets import DatasetError, load_dataset
from evaluation.runner import DEFAULT_TEMPLATE, evaluate_retrieval, evaluate_zeroshot

SR = 8000
E = np.eye(4, dtype=np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return unit


# Each clip is a constant signal of value code/8 (exact in float WAV); the fake encoder reads the code back.
AUDIO_VECTORS = {1: E[0], 2: E[1], 3: E[2], 4: _unit(0.5 * E[0] + 0.8 * E[3])}


class FakeEncoder:
    """Implements the encoder protocol with lookup tables instead of a model."""

    model_id = "fake-encoder"
    sample_rate = SR
    window_seconds = 10.0
    dim = 4

    def __init__(self, text_vectors: dict[str, np.ndarray]) -> None:
        self.text_vectors = text_vectors
        self.audio_batches: list[int] = []
        self.texts: list[str] = []

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        self.audio_batches.append(len(clips))
        for clip in clips:
            assert clip.dtype == np.float32 and clip.ndim == 1 and len(clip) == SR // 4
        return np.stack([AUDIO_VECTORS[round(float(clip.mean()) * 8)] for clip in clips])

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.stack([self.text_vectors[t] for t in texts])  # KeyError for an unexpected prompt


def _wav(path: Path, code: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.full((SR // 4, channels), code / 8, dtype=np.float32)
    sf.write(path, data, SR, subtype="FLOAT")


# ------------------------------------------------------------------------------------------- retrieval

CAPTIONS = {
    "a dog barks": E[0],
    "dog": E[0],
    "rain falls": E[1],
    "a caption that describes the bell clip": E[2],  # belongs to the rain clip: a miss
    "bell rings": E[2],
    "bell or dog": _unit(0.8 * E[0] + 0.6 * E[2]),
}


def _retrieval_set(root: Path) -> Path:
    _wav(root / "sfx" / "dog.wav", 1)
    _wav(root / "sfx" / "rain.wav", 2, channels=2)  # downmixed to mono by the decoder
    _wav(root / "sfx" / "bell.wav", 3)
    rows = [("dog", "a dog barks"), ("dog", "dog"), ("rain", "rain falls")]
    rows += [
        ("rain", "a caption that describes the bell clip"),
        ("bell", "bell rings"),
        ("bell", "bell or dog"),
    ]
    text = "path,caption\n" + "".join(f"sfx/{name}.wav,{caption}\n" for name, caption in rows)
    (root / "captions.csv").write_text(text, encoding="utf-8")
    return root / "captions.csv"


def test_retrieval_end_to_end_matches_hand_computed(tmp_path: Path) -> None:
    dataset = load_dataset("csv", _retrieval_set(tmp_path))
    encoder = FakeEncoder(CAPTIONS)
    result = evaluate_retrieval(encoder, dataset, batch_size=2, progress=False)
    assert encoder.audio_batches == [2, 1]
    # text→audio ranks of the own clip: 1, 1, 1, 3 (the miss: 0 tied with the dog clip, pessimistic), 1,
    # 2 ("bell or dog" scores dog 0.8 > bell 0.6).
    t2a = result.text_to_audio
    assert t2a.recall_at == {1: pytest.approx(4 / 6), 5: 1.0, 10: 1.0}
    assert t2a.map_at_10 == pytest.approx((4 + 1 / 3 + 1 / 2) / 6)
    assert t2a.median_rank == 1.0 and t2a.mean_rank == pytest.approx(1.5)
    # audio→text: dog finds its captions at 1, 2 (AP 1); rain at 1 and 6 (its miss ties with 4 others,
    # AP (1 + 2/6) / 2); bell at 2, 3 behind the miss (AP (1/2 + 2/3) / 2).
    a2t = result.audio_to_text
    assert a2t.map_at_10 == pytest.approx((1 + 2 / 3 + 7 / 12) / 3)
    assert a2t.recall_at[1] == pytest.approx(2 / 3)
    assert a2t.median_rank == 1.0 and a2t.mean_rank == pytest.approx(4 / 3)


def test_retrieval_needs_captions(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="has no captions"):
        evaluate_retrieval(FakeEncoder({}), load_dataset("esc50", _esc50(tmp_path)), progress=False)


# ------------------------------------------------------------------------------------------- zero-shot

ESC50_META = (
    "filename,fold,target,category,esc10,src_file,take\n"
    "1-1-A-0.wav,1,0,dog,True,1,A\n"
    "1-2-A-10.wav,1,10,rain,True,2,A\n"
    "2-3-A-45.wav,2,45,church_bells,False,3,A\n"
    "2-4-A-45.wav,2,45,church_bells,False,4,A\n"
)


def _esc50(root: Path) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text(ESC50_META, encoding="utf-8")
    for code, name in enumerate(["1-1-A-0.wav", "1-2-A-10.wav", "2-3-A-45.wav", "2-4-A-45.wav"], start=1):
        _wav(root / "audio" / name, code)
    return root


def _prompts(template: str, vectors: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    labels = ("dog", "rain", "church bells")  # underscores must have become spaces
    return {template.replace("{label}", label): v for label, v in zip(labels, vectors, strict=True)}


def test_zeroshot_end_to_end_matches_hand_computed(tmp_path: Path) -> None:
    dataset = load_dataset("esc50", _esc50(tmp_path))
    encoder = FakeEncoder(_prompts(DEFAULT_TEMPLATE, [E[0], E[1], E[2]]))
    result = evaluate_zeroshot(encoder, dataset, batch_size=3, progress=False)
    assert encoder.texts == [
        "This is a sound of dog.",
        "This is a sound of rain.",
        "This is a sound of church bells.",
    ]
    # The fourth clip (church bells) scores dog 0.53, church bells 0: wrong.
    assert result.class_names == ("dog", "rain", "church_bells")
    assert result.accuracy == pytest.approx(0.75)
    assert result.per_fold_accuracy == {1: 1.0, 2: 0.5}
    assert result.per_class_accuracy == (1.0, 1.0, 0.5)
    assert result.confusion is not None
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    # AP: dog 1, rain 1, church bells (1 + 2/4) / 2 (its missed clip ties at 0 with two negatives).
    assert result.mean_average_precision == pytest.approx((1 + 1 + 0.75) / 3)


def test_prompt_ensemble_is_the_renormalised_mean(tmp_path: Path) -> None:
    dataset = load_dataset("esc50", _esc50(tmp_path)).select_fold(2)
    templates = (DEFAULT_TEMPLATE, "{label}")
    vectors = _prompts(templates[0], [E[0], E[1], E[2]]) | _prompts(templates[1], [E[0], E[1], E[3]])
    result = evaluate_zeroshot(FakeEncoder(vectors), dataset, templates=templates, progress=False)
    # Clip 4 ≈ 0.53 e0 + 0.85 e3: dog 0.53 < church bells 0.85 / sqrt(2) = 0.60 once the mean of e2 and
    # e3 is renormalised; an unnormalised mean would give 0.42 and a wrong answer.
    assert result.accuracy == 1.0 and result.n_clips == 2


def test_zeroshot_multi_label(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1)
    _wav(tmp_path / "b.wav", 2)
    _wav(tmp_path / "c.wav", 4)
    (tmp_path / "captions.csv").write_text(
        "path,caption,labels\na.wav,dog in the rain,dog;rain\nb.wav,rain,rain\nc.wav,a bell,bell\n",
        encoding="utf-8",
    )
    dataset = load_dataset("csv", tmp_path)
    assert dataset.multi_label and dataset.label_set == ("bell", "dog", "rain")
    text = {f"This is a sound of {label}.": v for label, v in (("bell", E[2]), ("dog", E[0]), ("rain", E[1]))}
    result = evaluate_zeroshot(FakeEncoder(text), dataset, progress=False)
    # Clips a, b, c embed as e0, e1, 0.53 e0 + 0.85 e3. bell: every clip scores 0, one positive → AP 1/3.
    # dog: a (1, positive) first → AP 1. rain: b (1) first, then a (0) tied with c (0) → AP (1 + 2/3) / 2.
    assert result.per_class_ap == pytest.approx((1 / 3, 1.0, 5 / 6))
    assert result.mean_average_precision == pytest.approx((1 / 3 + 1 + 5 / 6) / 3)
    assert result.accuracy is None and result.multi_label


def test_zeroshot_rejects_labels_outside_the_label_set(tmp_path: Path) -> None:
    dataset = load_dataset("esc50", _esc50(tmp_path))
    with pytest.raises(DatasetError, match="labelled 'church_bells', which is not in the label set"):
        evaluate_zeroshot(FakeEncoder({}), dataset, labels=["dog", "rain"], progress=False)
    with pytest.raises(ValueError, match="must contain"):
        evaluate_zeroshot(FakeEncoder({}), dataset, templates=["no placeholder"], progress=False)


# ------------------------------------------------------------------------------------------------- CLI


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="soundsearch")
    eval_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_zeroshot_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = _esc50(tmp_path / "ESC-50-master")
    fake = FakeEncoder(_prompts(DEFAULT_TEMPLATE, [E[0], E[1], E[2]]))
    monkeypatch.setattr(eval_cmd, "_load_encoder", lambda spec, device: fake)
    out = tmp_path / "results" / "esc50.json"
    argv = [
        "eval",
        "zeroshot",
        "--dataset",
        "esc50",
        "--root",
        str(root),
        "--model",
        "fake",
        "--json",
        "--quiet",
    ]
    args = _parse([*argv, "--out", str(out)])
    assert args.run(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text(encoding="utf-8"))
    assert printed["task"] == "zeroshot" and printed["model"] == "fake-encoder" and printed["n_clips"] == 4
    assert printed["templates"] == [DEFAULT_TEMPLATE]
    assert printed["metrics"]["accuracy"] == pytest.approx(0.75)
    assert printed["metrics"]["per_fold_accuracy"] == {"1": 1.0, "2": 0.5}

    args = _parse([*argv, "--fold", "2", "--limit", "1"])
    assert args.run(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["fold"], one["n_clips"], one["metrics"]["accuracy"]) == (2, 1, 1.0)


def test_cli_retrieval_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = _retrieval_set(tmp_path)
    monkeypatch.setattr(eval_cmd, "_load_encoder", lambda spec, device: FakeEncoder(CAPTIONS))
    args = _parse(["eval", "retrieval", "--dataset", "csv", "--root", str(csv_path), "--model", "fake", "--quiet"])
    assert args.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    t2a = next(line for line in lines if line.startswith("text→audio")).split()
    assert t2a[1:] == ["66.67", "100.00", "100.00", "80.56", "1.0", "1.5"]


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(
            [
                "eval",
                "zeroshot",
                "--dataset",
                "esc50",
                "--root",
                "x",
                "--model",
                "m",
                "--template",
                "no label",
            ]
        )
    assert "has no {label} placeholder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(["eval", "retrieval", "--dataset", "fsd50k", "--root", "x", "--model", "m"])
    args = _parse(["eval", "zeroshot", "--dataset", "esc50", "--root", str(tmp_path / "none"), "--model", "m"])
    with pytest.raises(DatasetError, match="dataset root not found"):
        args.run(args)


def test_cli_with_the_real_tiny_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Plumbing with a real (randomly initialised) CLAP model: real loading, resampling 8 kHz → 48 kHz."""
    root = _esc50(tmp_path)
    argv = ["eval", "zeroshot", "--dataset", "esc50", "--root", str(root), "--model", "tiny-random"]
    args = _parse([*argv, "--json", "--quiet", "--limit", "2"])
    assert args.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny-random" and report["n_clips"] == 2
    assert math.isfinite(report["metrics"]["mAP"])
    assert report["metrics"]["accuracy"] in (0.0, 0.5, 1.0)
