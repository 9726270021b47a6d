"""The procedural sound library: determinism, declared formats, ground truth, captions, CLI, learnability."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from api.commands import synth as synth_command
from evaluation import datasets
from evaluation.synth import CLASSES, generate_library, plan_clip, synthesize_clip
from evaluation.synth.baseline import learnability_baseline
from evaluation.synth.captions import WORDING, modifier_phrases, write_captions
from evaluation.synth.library import (
    AUDIOCAPS_CSV,
    CLOTHO_CSV,
    FORMATS,
    METADATA_COLUMNS,
    SAMPLE_RATES,
    encode,
)
from evaluation.synth.modifiers import MODIFIER_VALUES
from evaluation.synth.sources import Params
from indexer.errors import SoundsearchError

SEED = 0
MAX_S = 3.0  # short clips keep the on-disk tests quick; long clips are tested in memory


def _library_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _mentions_class(caption: str, name: str) -> bool:
    return any(k in caption.lower() for k in WORDING[name].keywords)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "lib"
    summary = generate_library(root, len(CLASSES), SEED, max_duration_s=MAX_S, progress=False)
    assert summary.clips == len(CLASSES)
    return root


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_same_seed_gives_identical_bytes_and_clip_i_does_not_depend_on_n(library: Path, tmp_path: Path) -> None:
    again = generate_library(tmp_path / "again", len(CLASSES), SEED, max_duration_s=MAX_S, progress=False)
    reference = _library_bytes(library)
    assert _library_bytes(again.out_dir) == reference
    assert any(name.endswith(".ogg") for name in reference)  # Vorbis serial numbers are pinned too

    fewer = generate_library(tmp_path / "fewer", 8, SEED, max_duration_s=MAX_S, progress=False)
    rows = _rows(fewer.metadata_csv)
    assert rows == _rows(library / "metadata.csv")[:8]
    for row in rows:
        assert (fewer.out_dir / row["path"]).read_bytes() == reference[row["path"]]

    other = generate_library(tmp_path / "other", 8, SEED + 1, max_duration_s=MAX_S, progress=False)
    other_rows = _rows(other.metadata_csv)
    assert [r["caption_1"] for r in other_rows] != [r["caption_1"] for r in rows]
    assert _library_bytes(other.out_dir) != _library_bytes(fewer.out_dir)


@pytest.mark.parametrize(
    ("fmt", "subtype"), [(fmt, subtype) for fmt, (_, _, subtypes) in FORMATS.items() for subtype, _ in subtypes]
)
def test_every_format_and_subtype_encodes_to_the_same_bytes_at_another_time(fmt: str, subtype: str) -> None:
    clip = synthesize_clip(SEED, 0, max_duration_s=1.0)
    spec = dataclasses.replace(clip.truth.spec, format=fmt, subtype=subtype)
    clip = dataclasses.replace(clip, truth=dataclasses.replace(clip.truth, spec=spec))
    first = hashlib.sha256(encode(clip)).hexdigest()
    time.sleep(1.05)  # libsndfile stamps float WAVs with the wall clock in seconds
    assert hashlib.sha256(encode(clip)).hexdigest() == first


def test_files_are_what_metadata_declares(library: Path) -> None:
    rows = _rows(library / "metadata.csv")
    assert len(rows) == len(CLASSES)
    assert {r["classes"].split(";")[0] for r in rows} == set(CLASSES)
    for row in rows:
        path = library / row["path"]
        info = sf.info(str(path))
        assert path.suffix == "." + FORMATS[row["format"]][0]
        assert info.format == row["format"]
        assert info.samplerate == int(row["sample_rate"])
        assert info.channels == int(row["channels"])
        assert info.frames == round(float(row["duration_s"]) * info.samplerate), row["path"]
        audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
        lossy = row["format"] in ("OGG", "MP3")  # decoded lossy audio may overshoot the encoded peak
        assert np.all(np.isfinite(audio)) and 0.0 < np.abs(audio).max() <= (1.1 if lossy else 0.9)
        assert 1.0 <= float(row["duration_s"]) <= MAX_S + 1.0  # a class minimum may exceed the cap


def test_library_mix_of_formats_rates_channels_and_lengths() -> None:
    specs = [plan_clip(SEED, i) for i in range(400)]
    assert {s.format for s in specs} == set(FORMATS)
    assert {s.sample_rate for s in specs} == set(SAMPLE_RATES)
    assert {s.channels for s in specs} == {1, 2}
    durations = np.array([s.duration_s for s in specs])
    assert durations.min() >= 1.0 and durations.max() <= 30.0
    assert 0.6 < np.mean(durations <= 10) < 0.95 and np.any(durations >= 15)
    assert sum(s.format == "WAV" for s in specs) > sum(s.format == "MP3" for s in specs)
    assert sum(s.sample_rate == 48_000 for s in specs) > len(specs) / 2
    assert {len(s.backgrounds) for s in specs} == {0, 1, 2}
    assert all(s.foreground not in s.backgrounds for s in specs)
    # Every block of 27 consecutive clips holds each class once.
    assert sorted(s.foreground for s in specs[27:54]) == sorted(CLASSES)
    assert len({Path(s.path).stem for s in specs}) == len(specs)
    assert any("_SSYN_" in s.path for s in specs) and any("/" in s.path for s in specs)


def test_captions_in_the_library(library: Path) -> None:
    mixtures = modified = 0
    for row in _rows(library / "metadata.csv"):
        captions = [row[f"caption_{k}"] for k in range(1, 6)]
        classes = row["classes"].split(";")
        params = json.loads(row["params"])
        assert len(set(captions)) == 5 and all(len(c.split()) >= 2 for c in captions)
        for caption in captions:
            for name in classes:
                assert _mentions_class(caption, name), (name, caption)
            for value in params["modifiers"].values():
                assert any(p in caption.lower() for p in modifier_phrases(value)), (value, caption)
        mixtures += len(classes) > 1
        modified += bool(params["modifiers"])
        if len(classes) > 1:
            assert sum("background" in c.lower() or " while " in c.lower() for c in captions) >= 3
    assert mixtures > 0 and modified > 0


@pytest.mark.parametrize("name", CLASSES)
def test_every_variant_and_modifier_is_worded(name: str) -> None:
    rng = np.random.default_rng(7)
    variants: list[Params] = [{k: v} for k, v in (key.split("=", 1) for key in WORDING[name].variants)] or [{}]
    values = [(kind, v) for kind, pair in MODIFIER_VALUES.items() for v in pair]
    for params in variants:
        for kind, value in values:
            background = CLASSES[(CLASSES.index(name) + 1) % len(CLASSES)]
            mixes: tuple[list[tuple[str, Params]], ...] = ([], [(background, {})])
            for backgrounds in mixes:
                captions = write_captions(rng, (name, params), {kind: value}, backgrounds)
                assert len(set(captions)) == 5
                for caption in captions:
                    assert caption[0].isupper() and "  " not in caption and "{" not in caption
                    assert _mentions_class(caption, name), caption
                    assert any(p in caption.lower() for p in modifier_phrases(value)), caption
                    if backgrounds:
                        assert _mentions_class(caption, background), caption


def test_long_clip_has_several_events_at_their_times() -> None:
    index = next(i for i in range(200) if (s := plan_clip(SEED, i)).duration_s >= 15 and not s.backgrounds)
    clip = synthesize_clip(SEED, index)
    spec = clip.truth.spec
    assert clip.audio.shape == (round(spec.duration_s * spec.sample_rate), spec.channels)
    events = clip.truth.events
    assert len(events) == spec.event_count >= 2
    assert all(0 <= e.start_s < e.end_s <= spec.duration_s for e in events)
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(events))
    # The foreground is much louder inside its events than between them.
    mono = clip.audio.mean(axis=1).astype(np.float64)
    inside = np.zeros(len(mono), dtype=bool)
    for e in events:
        inside[int(e.start_s * spec.sample_rate) : int(e.end_s * spec.sample_rate)] = True
    assert np.sqrt(np.mean(mono[inside] ** 2)) > 4 * np.sqrt(np.mean(mono[~inside] ** 2))


def test_caption_csvs_match_the_published_formats_and_loaders_read_them(library: Path) -> None:
    with (library / "metadata.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == list(METADATA_COLUMNS)
    with (library / AUDIOCAPS_CSV).open(newline="") as handle:
        assert next(csv.reader(handle)) == ["audiocap_id", "youtube_id", "start_time", "caption"]
    with (library / CLOTHO_CSV).open(newline="") as handle:
        assert next(csv.reader(handle)) == ["file_name", *(f"caption_{k}" for k in range(1, 6))]
    audiocaps_rows = _rows(library / AUDIOCAPS_CSV)
    assert len(audiocaps_rows) == 5 * len(CLASSES)
    assert len({r["audiocap_id"] for r in audiocaps_rows}) == len(audiocaps_rows)
    clotho_rows = _rows(library / CLOTHO_CSV)
    assert all((library / r["file_name"]).is_file() for r in clotho_rows)
    for row in _rows(library / "metadata.csv"):
        events = json.loads(row["events"])
        assert {e["class"] for e in events} == set(row["classes"].split(";"))

    audiocaps = datasets.load_audiocaps(library)
    synth = datasets.load_synth(library)
    for dataset in (audiocaps, synth):
        assert len(dataset.items) == len(CLASSES)
        assert all(item.path.is_file() and len(item.captions) == 5 for item in dataset.items)


def test_cli_writes_a_library_and_reports_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    synth_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["synth", str(tmp_path / "cli"), "--n", "3", "--seed", "4", "--max-duration", "2", "--json",
         "--no-progress"]
    )  # fmt: skip
    assert args.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 3 and Path(report["metadata_csv"]).is_file()
    assert len(_rows(tmp_path / "cli" / "metadata.csv")) == 3

    bad = parser.parse_args(["synth", str(tmp_path / "bad"), "--n", "0"])
    with pytest.raises(SoundsearchError, match="at least one clip"):
        bad.run(bad)


@pytest.mark.usefixtures("one_torch_thread")
def test_every_class_is_learnable_but_the_baseline_is_not_perfect() -> None:
    result = learnability_baseline(clips_per_class=20, seed=SEED, workers=2)
    assert result.chance == pytest.approx(1 / 27)
    assert 0.5 <= result.accuracy < 1.0, result.accuracy
    # Each class is recognised well above chance (1/27 ≈ 4 %): at least 3 of its 20 held-out clips.
    assert min(result.per_class_accuracy.values()) >= 0.15, result.per_class_accuracy
