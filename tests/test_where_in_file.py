"""Search by example, window against window: a short sound is found inside a long ambience at its time,
and the middle of a long example finds what matches only that middle.

The ambience is the synthetic library's rain (evaluation/synth); the planted sound and the decoys are
the planted encoder's bands (tests/planted.py), so which file and which window must win is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.synth import dsp
from evaluation.synth.sources import SOURCES
from indexer.audio import load_audio, resample
from indexer.pipeline import index_paths
from search.engine import Engine
from storage.catalog import Catalog
from storage.vectors import IndexSpec, create_index
from tests.planted import SR, PlantedEncoder, tone, write

PLANTED_AT = (32.0, 36.0)  # only the window [30, 40] holds all of it (windows of 10 s, hop 5 s)
HOP_S = 5.0


def whistle(seconds: float) -> np.ndarray:
    return tone(6, seconds, 0.3)


def hum(seconds: float) -> np.ndarray:
    return tone(1, seconds, 0.3)


def rumble(seconds: float) -> np.ndarray:
    return tone(0, seconds, 0.3)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("where") / "lib"
    rain = SOURCES["rain"].render(np.random.default_rng(3), int(45 * dsp.SR), 1.0, 1.0).audio
    ambience = resample(np.asarray(rain, dtype=np.float32), dsp.SR, SR)
    ambience *= 0.05 / float(ambience.std())
    start, end = (int(t * SR) for t in PLANTED_AT)
    ambience[start:end] += whistle(PLANTED_AT[1] - PLANTED_AT[0])
    write(root / "ambience" / "Rain_Street_Long.wav", ambience)
    # The pooled example's twin: every part of the long example at once. Pooling ranks it first.
    write(root / "decoys" / "Hum_Whistle_Rumble_Mix.wav", hum(10.0) + whistle(10.0) + rumble(10.0))
    write(root / "decoys" / "Hum_Rumble.wav", hum(6.0) + rumble(6.0))
    write(root / "decoys" / "Engine.wav", tone(2, 4.0) + whistle(4.0) * 0.3)
    return root


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, library: Path) -> Engine:
    catalog = Catalog.open(tmp_path_factory.mktemp("home"))
    index_paths(catalog, PlantedEncoder(), [library])
    return Engine(catalog, PlantedEncoder())


def test_a_short_example_finds_the_long_file_at_the_right_time(engine: Engine, tmp_path: Path) -> None:
    example = write(tmp_path / "whistle_take.wav", whistle(2.0))
    best = engine.similar(example, k=4)[0]
    assert best.path.name == "Rain_Street_Long.wav"
    onset, offset = PLANTED_AT
    assert best.start_s <= onset and best.end_s >= offset and onset - best.start_s < HOP_S
    assert (best.query_start_s, best.query_end_s) == (0.0, 2.0)  # the example is one window
    assert best.audio_score == pytest.approx(best.score) and 0.8 < best.audio_score <= 1.0


def test_the_middle_of_a_long_example_finds_what_matches_only_the_middle(engine: Engine, tmp_path: Path) -> None:
    """30 s: hum, then the whistle, then rumble. Mean-pooled, this example is the mix decoy's twin and
    ranks it first; window by window, its whistle finds the whistle planted in the rain."""
    example = write(tmp_path / "hum_whistle_rumble.wav", np.concatenate([hum(10.0), whistle(10.0), rumble(10.0)]))
    hits = engine.similar(example, k=4)
    best = hits[0]
    assert best.path.name == "Rain_Street_Long.wav", [h.path.name for h in hits]
    assert (best.start_s, best.end_s) == (30.0, 40.0)
    assert (best.query_start_s, best.query_end_s) == (10.0, 20.0)  # the example's whistle matched
    mix = next(h for h in hits if h.path.name == "Hum_Whistle_Rumble_Mix.wav")
    assert best.audio_score is not None and mix.audio_score is not None and best.audio_score > mix.audio_score


def test_an_indexed_example_searches_with_its_stored_windows(library: Path, tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    write(examples / "hum_whistle_rumble.wav", np.concatenate([hum(10.0), whistle(10.0), rumble(10.0)]))
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, PlantedEncoder(), [library, examples])
        hits = Engine(catalog, PlantedEncoder()).similar(examples / "hum_whistle_rumble.wav", k=2)
    assert "hum_whistle_rumble.wav" not in [h.path.name for h in hits]  # not its own neighbour
    assert (hits[0].path.name, hits[0].start_s, hits[0].query_start_s) == ("Rain_Street_Long.wav", 30.0, 10.0)


def test_mixing_an_example_with_words_keeps_its_windows(engine: Engine, tmp_path: Path) -> None:
    example = write(tmp_path / "long.wav", np.concatenate([hum(10.0), whistle(10.0), rumble(10.0)]))
    best = engine.search("whistle", k=1, mode="vector", like=example, like_weight=0.7)[0]
    assert (best.path.name, best.start_s, best.query_start_s) == ("Rain_Street_Long.wav", 30.0, 10.0)


def test_an_approximate_index_is_rescored_exactly(engine: Engine, tmp_path: Path) -> None:
    """On SQ8 codes the search's scores are close, not exact: the hits carry the stored vectors' cosine."""
    catalog = engine.catalog
    seg_ids, owners = catalog.segment_owners()
    vectors = catalog.vectors(seg_ids)
    example = write(tmp_path / "whistle_take.wav", whistle(2.0))
    query = engine.encoder.embed_audio([load_audio(example, SR).samples])[0]
    exact = vectors @ query
    approximate = create_index(vectors.shape[1], IndexSpec("ivf_sq8", nlist=1))
    approximate.train(vectors)
    approximate.add(seg_ids, vectors)
    flat = create_index(vectors.shape[1], "flat")
    flat.add(seg_ids, vectors)
    catalog.index.replace_with(approximate)
    try:
        hits = engine.similar(example, k=3)
    finally:
        catalog.index.replace_with(flat)
    for hit in hits:
        mine = owners == hit.file_id
        assert hit.audio_score == pytest.approx(float(exact[mine].max()), abs=1e-6)
        best_segment = int(seg_ids[mine][np.argmax(exact[mine])])
        assert catalog.segments_by_id([best_segment])[best_segment].start_s == hit.start_s


def test_a_very_long_example_is_searched_as_a_bounded_number_of_parts(engine: Engine, tmp_path: Path) -> None:
    """Past MAX_EXAMPLE_WINDOWS windows, runs of consecutive windows are pooled: one batch still, and
    the part that matched still says where in the example the match lies."""
    from search.engine import MAX_EXAMPLE_WINDOWS

    seconds = 5.0 * (MAX_EXAMPLE_WINDOWS + 8)
    audio = hum(seconds)
    audio[int(100 * SR) : int(110 * SR)] = whistle(10.0)
    best = engine.similar(write(tmp_path / "long_take.wav", audio), k=1)[0]
    assert best.path.name == "Rain_Street_Long.wav"
    assert best.query_start_s is not None and best.query_end_s is not None
    assert best.query_start_s <= 100.0 < 110.0 <= best.query_end_s < best.query_start_s + 30.0
