from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.pipeline import index_paths
from search.engine import Engine
from search.query import Filters, QueryError
from search.zeroshot import ZeroShotClassifier, classify_library, parse_labels
from storage.catalog import Catalog
from tests.conftest import run_cli
from tests.planted import PlantedEncoder, noise, tone, write


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planted") / "lib"
    # A long ambience with a whistle planted at 22-28 s.
    ambience = noise(40.0, seed=1)
    ambience[22 * 8000 : 28 * 8000] += tone(6, 6.0)
    write(root / "ambience" / "Street_Ambience_Long.wav", ambience)
    # Hybrid case: the relevant audio has an uninformative name; the relevant name has other audio.
    write(root / "misc" / "take_001.wav", tone(6, 3.0))
    write(root / "misc" / "Whistle_Referee_02.wav", noise(3.0, amplitude=0.3, seed=2))
    for i in range(3):  # decoys: some whistle energy, more engine
        write(root / "misc" / f"sfx_decoy_{i}.wav", tone(6, 3.0, 0.25) + tone(2, 3.0, 0.35 + 0.05 * i))
    # Filter case: strong whistles in WAV, weaker ones in FLAC.
    for i in range(8):
        write(root / "wav" / f"loud_{i}.wav", tone(6, 2.0) + tone(1, 2.0, 0.05 * i))
    for i in range(6):
        write(root / "flac" / f"soft_{i}.flac", tone(6, 2.0 + i, 0.3) + tone(3, 2.0 + i, 0.2), fmt="FLAC")
    # Near-duplicates: the same sound re-encoded, gain-changed and trimmed.
    chord = tone(4, 4.0, 0.3) + tone(0, 4.0, 0.2)
    write(root / "dupes" / "chord.wav", chord)
    write(root / "dupes" / "chord_quiet.wav", 0.5 * chord)
    write(root / "dupes" / "chord.flac", chord, fmt="FLAC")
    write(root / "dupes" / "chord_trim.wav", chord[: int(0.9 * len(chord))])
    return root


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, library: Path, module_db_url: str | None) -> Engine:
    catalog = Catalog.open(tmp_path_factory.mktemp("home"), db_url=module_db_url)
    encoder = PlantedEncoder()
    index_paths(catalog, encoder, [library])
    return Engine(catalog, encoder)


def names(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.path.name for h in hits]


def test_planted_segment_is_found_with_its_time(engine: Engine) -> None:
    hits = engine.search("whistle", k=30, mode="vector")
    long = next(h for h in hits if h.path.name == "Street_Ambience_Long.wav")
    assert (long.start_s, long.end_s) == (20.0, 30.0)
    assert names(hits).count("Street_Ambience_Long.wav") == 1  # one hit per file
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_fusion_beats_either_side(engine: Engine) -> None:
    relevant = {"take_001.wav", "Whistle_Referee_02.wav"}
    subset = Filters(folder="misc")
    vector = set(names(engine.search("whistle", k=2, mode="vector", filters=subset)))
    text = set(names(engine.search("whistle", k=2, mode="text", filters=subset)))
    hybrid = engine.search("whistle", k=2, mode="hybrid", filters=subset)
    assert len(vector & relevant) == 1 and len(text & relevant) == 1
    assert set(names(hybrid)) == relevant
    assert {tuple(h.matched_by) for h in hybrid} == {("vector", "text"), ("vector",)}


def test_hits_say_how_well_the_sound_and_the_words_matched(engine: Engine, library: Path) -> None:
    """Beside the ranking's score, each hit says its best window's cosine and which query words matched."""
    misc = Filters(folder="misc")
    vector = engine.search("whistle", k=5, mode="vector", filters=misc)
    assert vector[0].path.name == "take_001.wav" and vector[0].audio_score == pytest.approx(vector[0].score)
    assert vector[0].audio_score > 0.99 and vector[0].matched_terms == ()
    referee = next(h for h in vector if h.path.name == "Whistle_Referee_02.wav")
    assert referee.matched_terms == ("whistle",)  # the words are read in vector mode too

    text = engine.search("referee whistle -engine", k=3, mode="text")
    assert [h.path.name for h in text] == ["Whistle_Referee_02.wav"]
    assert text[0].audio_score is None and text[0].matched_terms == ("referee", "whistle")  # never "engine"

    hybrid = {h.path.name: h for h in engine.search("whistle", k=2, mode="hybrid", filters=misc)}
    take, named = hybrid["take_001.wav"], hybrid["Whistle_Referee_02.wav"]
    assert take.score < 0.05 and take.audio_score is not None and take.audio_score > 0.99  # fusion value, cosine
    assert named.matched_terms == ("whistle",) and named.audio_score is not None and named.audio_score < 0.6
    assert take.query_start_s is None  # no example

    outside = write(library.parent / "outside_take.wav", tone(6, 1.5))
    (example,) = engine.similar(outside, k=1, filters=misc)
    assert example.audio_score == pytest.approx(example.score) and example.matched_terms == ()
    assert (example.query_start_s, example.query_end_s) == (0.0, 1.5)


def test_a_hit_found_only_by_its_words_has_no_audio_score(tmp_path: Path) -> None:
    """Hybrid search fuses the 50 best sounds with the best names: a file only its name brought in has
    words but no cosine (its sound was not among the best)."""
    for i in range(55):
        write(tmp_path / "lib" / f"tone_{i:02d}.wav", tone(6, 0.5) + tone(2, 0.5, 0.01 * i))
    write(tmp_path / "lib" / "Rain_On_Roof.wav", tone(0, 0.5))
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, PlantedEncoder(), [tmp_path / "lib"])
        hits = Engine(catalog, PlantedEncoder()).search("whistle in the rain", k=5)
    rain = next(h for h in hits if h.path.name == "Rain_On_Roof.wav")
    assert rain.matched_by == ("text",) and rain.audio_score is None and rain.matched_terms == ("rain",)
    assert all(h.audio_score is not None and h.matched_terms == () for h in hits if h is not rain)


def test_filters_apply_before_the_top_k_cut(engine: Engine) -> None:
    hits = engine.search("whistle", k=5, mode="vector", filters=Filters(formats=("flac",)))
    assert len(hits) == 5 and all(h.path.suffix == ".flac" for h in hits)
    long_only = engine.search("whistle", k=3, mode="hybrid", filters=Filters(min_duration_s=6.0))
    assert len(long_only) == 3 and all((h.duration_s or 0) >= 6.0 for h in long_only)
    short = engine.search("whistle", k=50, mode="vector", filters=Filters(max_duration_s=2.5, folder="wav"))
    assert sorted(names(short)) == sorted(f"loud_{i}.wav" for i in range(8))


def test_negative_terms_and_examples(engine: Engine, library: Path) -> None:
    plain = names(engine.search("whistle", k=6, mode="vector", filters=Filters(folder="misc")))
    assert plain[0] == "take_001.wav"
    without_engine = names(engine.search("whistle -engine", k=6, mode="vector", filters=Filters(folder="misc")))
    assert without_engine.index("sfx_decoy_0.wav") >= plain.index("sfx_decoy_0.wav")
    assert "Whistle_Referee_02.wav" not in names(engine.search("whistle -referee", k=10, mode="text"))

    similar = engine.similar(library / "dupes" / "chord.wav", k=3)
    assert "chord.wav" not in names(similar)  # an indexed example is not its own neighbour
    assert set(names(similar)) == {"chord_quiet.wav", "chord.flac", "chord_trim.wav"}
    outside = library.parent / "outside.wav"
    write(outside, tone(6, 1.5))
    assert engine.similar(outside, k=1, filters=Filters(folder="misc"))[0].path.name == "take_001.wav"
    mixed = engine.search(
        "engine", k=1, mode="vector", like=str(outside), like_weight=0.5, filters=Filters(folder="misc")
    )
    assert mixed[0].path.name.startswith("sfx_decoy")  # engine + whistle: the decoys have both


def test_duplicates_groups_reencoded_trimmed_and_gain_changed(engine: Engine) -> None:
    groups = [sorted(names(g)) for g in engine.duplicates(threshold=0.99)]
    assert sorted(["chord.flac", "chord.wav", "chord_quiet.wav", "chord_trim.wav"]) in groups


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "empty query"), ("   ", "empty query"), ("x" * 10_000, "too long"), ("-thunder", "only says what to avoid")],
)
def test_bad_queries(engine: Engine, query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        engine.search(query)


def test_bad_examples_and_parameters(engine: Engine, tmp_path: Path) -> None:
    from indexer.errors import AudioDecodeError

    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioDecodeError):
        engine.similar(text)
    with pytest.raises(QueryError, match="no indexed file"):
        engine.similar(999_999)
    with pytest.raises(QueryError, match="mode"):
        engine.search("hum", mode="fuzzy")
    with pytest.raises(QueryError, match="k must be"):
        engine.search("hum", k=0)


def test_query_embeddings_are_cached(engine: Engine) -> None:
    engine.search("a chime in a hall", mode="vector")
    before = engine._embed_text.cache_info().hits
    engine.search("a chime in a hall", mode="vector")
    assert engine._embed_text.cache_info().hits == before + 1


@pytest.mark.parametrize(
    ("text", "message"), [("", "no labels"), ("dog,,cat", "blank label"), ("dog, Dog", "duplicate"), ("a,", "blank")]
)
def test_label_lists_are_validated(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_labels(text)


def test_zero_shot_single_and_multi_label(engine: Engine, library: Path) -> None:
    encoder = engine.encoder
    single = ZeroShotClassifier(encoder, ["whistle", "engine", "rumble"])
    (pred,) = single.predict_files([library / "misc" / "take_001.wav"])
    assert pred.scores[0][0] == "whistle" and sum(s for _, s in pred.scores) == pytest.approx(1.0, abs=1e-5)

    decoy = library / "misc" / "sfx_decoy_2.wav"
    multi = ZeroShotClassifier(encoder, ["whistle", "engine", "rumble"], multi_label=True)
    (m,) = multi.predict_files([decoy])
    scores = dict(m.scores)
    assert scores["whistle"] > 0.5 and scores["engine"] > 0.5 and scores["rumble"] < 0.5
    # A label's multi-label score does not depend on the other labels in the set.
    (alone,) = ZeroShotClassifier(encoder, ["engine"], multi_label=True).predict_files([decoy])
    assert dict(alone.scores)["engine"] == pytest.approx(scores["engine"], abs=1e-6)

    # Long files: the whistle at 22-28 s is present (max over windows) but rare on average.
    long = library / "ambience" / "Street_Ambience_Long.wav"
    (lm,) = multi.predict_files([long])
    assert dict(lm.scores)["whistle"] > 0.5


def test_library_classification_uses_stored_vectors_and_saves_tags(engine: Engine, tmp_path: Path) -> None:
    catalog = Catalog.open(
        engine.catalog.home, db_url=engine.catalog.database_url
    )  # writable handle on the same catalog
    classifier = ZeroShotClassifier(engine.encoder, ["whistle", "chime", "hum"])
    results = classify_library(catalog, classifier)
    assert len(results) == len(catalog.files(status="ok"))
    by_name = {Path(p.source).name: p for _, p in results}
    assert by_name["chord.wav"].scores[0][0] == "chime"
    catalog.set_tags("zeroshot", {fid: [p.scores[0]] for fid, p in results})
    tagged = engine.search("whistle", k=50, mode="vector", filters=Filters(tags=("chime",)))
    assert tagged and all("chime" in h.tags for h in tagged)
    assert "chord.wav" in names(engine.search("chime", k=20, mode="text"))  # tags are full-text searchable
    catalog.close()


def test_cli_search_classify_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import tone_mix

    lib = tmp_path / "lib"
    import soundfile as sf

    for i in range(4):
        (lib / f"f{i}").mkdir(parents=True)
        sf.write(lib / f"f{i}" / f"GLAS_Break_Bottle_{i:02d}.wav", tone_mix(1.0 + i, 48_000, seed=i), 48_000)
    home = str(tmp_path / "home")
    assert run_cli(capsys, "index", str(lib), "--home", home, "--model", "tiny-random", "--json").returncode == 0
    out = run_cli(capsys, "search", "glass break", "--home", home, "--json", "-k", "3")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 3 and {"path", "score", "start_s", "end_s", "file_id"} <= hits[0].keys()
    assert {"audio_score", "matched_terms"} <= hits[0].keys()
    out = run_cli(capsys, "search", "bottle", "--home", home, "-k", "1")  # a person's view: cosine and words, not RRF
    assert out.returncode == 0 and " audio · words: bottle " in out.stdout, out.stdout
    out = run_cli(capsys, "similar", str(hits[0]["file_id"]), "--home", home, "--json", "-k", "2")
    assert out.returncode == 0 and str(hits[0]["path"]) not in out.stdout
    out = run_cli(capsys, "classify", "--library", "--labels", "glass, dog", "--save-as-tags", "--home", home, "--json")
    assert out.returncode == 0, out.stderr
    assert all(p["labels"][0]["label"] in {"glass", "dog"} for p in json.loads(out.stdout))
    tagged = json.loads(run_cli(capsys, "search", "bottle", "--tag", "glass", "--home", home, "--json").stdout)
    assert all("glass" in h["tags"] for h in tagged)
    for bad in (
        ["search", "", "--home", home],
        ["classify", str(lib / "f0" / "GLAS_Break_Bottle_00.wav"), "--labels", "a,,b", "--home", home],
        ["similar", str(tmp_path / "missing.wav"), "--home", home],
    ):
        result = run_cli(capsys, *bad)
        assert result.returncode == 2 and "error:" in result.stderr, bad


@pytest.mark.parametrize(
    ("filters", "postfilter_fetch"),
    [(Filters(folder="glass"), 40), (Filters(folder="glass"), 1 << 30), (Filters(formats=("wav",)), 2048)],
    ids=["selective: among the passing files", "selective: candidates checked", "broad: every file passes"],
)
def test_filtered_vector_search_equals_brute_force_over_passing_files(
    tmp_path: Path, filters: Filters, postfilter_fetch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.bench_search import RandomTextEncoder, build
    from storage.index_choice import IndexPolicy

    monkeypatch.setattr("search.engine.POSTFILTER_FETCH", postfilter_fetch)  # which strategy the search takes
    catalog = build(tmp_path / "big", 3000, policy=IndexPolicy(exact_max_bytes=1 << 62))
    encoder = RandomTextEncoder(catalog.index.count())
    engine = Engine(catalog, encoder)  # type: ignore[arg-type]
    seg_ids, owners = catalog.segment_owners()
    vectors = catalog.vectors(seg_ids)
    paths = catalog.paths(sorted(set(owners.tolist())))
    passing = {fid for fid, p in paths.items() if filters.folder is None or f"/{filters.folder}/" in p}
    for query in ("glass door", "rain wind impact"):
        hits = engine.search(query, 20, mode="vector", filters=filters)
        scores = vectors @ encoder.embed_text([query])[0]
        best: dict[int, float] = {}
        for i in np.argsort(-scores):
            fid = int(owners[i])
            if fid in passing and fid not in best:
                best[fid] = float(scores[i])
        assert [h.file_id for h in hits] == list(best)[:20]
    catalog.close()
