"""Supervised tagging heads on a planted library: each class is a dominant frequency band (see planted.py)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.settings import Settings
from indexer.pipeline import index_paths
from search.engine import Engine
from search.query import Filters
from search.tagger import (
    Tagger,
    apply_enabled_taggers,
    check_finetune,
    cross_validate_bags,
    fit_tagger,
    load_tagger,
    save_tagger,
    stratified_folds,
    tag_paths,
    train_tagger,
    zero_shot_prior,
)
from search.tagger_config import TaggerError, TrainConfig
from search.tagger_data import Bags, LabelledPaths, load_bags, read_labels_csv, resolve_labels
from search.tagger_model import calibrate_thresholds, split_validation
from search.zeroshot import ZeroShotClassifier
from storage.catalog import Catalog
from tests.planted import PlantedEncoder, noise, tone, write
from tests.test_api import wait_for

# Label names are words of the planted text tower, so zero-shot classification knows them too.
BANDS = {"bird": 5, "hiss": 7, "hum": 1, "voice": 3}


def _clip(band: int, seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    distractor = int(rng.choice([b for b in range(8) if b != band]))
    return tone(band, seconds, 0.5) + tone(distractor, seconds, rng.uniform(0.1, 0.3)) + noise(seconds, 0.05, seed)


def _write_library(root: Path, train: int, test: int) -> None:
    for label, band in BANDS.items():
        for i in range(train + test):
            write(
                root / ("train" if i < train else "test") / label / f"{label}_{i:02d}.wav", _clip(band, 100 * band + i)
            )
    for i, (a, b) in enumerate([("bird", "hum"), ("voice", "hiss"), ("hum", "voice"), ("bird", "hiss")] * 2):
        mix = tone(BANDS[a], 1.0, 0.4) + tone(BANDS[b], 1.0, 0.4) + noise(1.0, 0.05, 1000 + i)
        write(root / "mix" / f"{a}+{b}_{i}.wav", mix)
    for label, band in BANDS.items():  # 20 s of noise with the class's sound in one window only
        long = noise(20.0, 0.05, 2000 + band)
        long[12 * 8000 : 14 * 8000] += tone(band, 2.0)
        write(root / "long" / f"long_{label}.wav", long)


def _labels_csv(path: Path, files: list[Path], multi: bool = False) -> Path:
    rows = ["path,label"]
    for f in files:
        label = ";".join(f.stem.split("_")[0].split("+")) if multi else f.parent.name
        rows.append(f"{f},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tagger") / "lib"
    _write_library(root, train=8, test=4)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, library: Path) -> Path:
    home = tmp_path_factory.mktemp("home")
    with Catalog.open(home) as catalog:
        index_paths(catalog, PlantedEncoder(), [library])
    return home


@pytest.fixture(scope="module")
def train_csv(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _labels_csv(tmp_path_factory.mktemp("csv") / "train.csv", sorted((library / "train").rglob("*.wav")))


@pytest.fixture(scope="module")
def test_csv(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _labels_csv(tmp_path_factory.mktemp("csv") / "test.csv", sorted((library / "test").rglob("*.wav")))


def _train(library: Path) -> list[Path]:
    return sorted((library / "train").rglob("*.wav"))


def _of_files(bags: Bags, file_ids: np.ndarray) -> Bags:
    return bags.subset(np.searchsorted(bags.file_ids, file_ids))


def _planted_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loads the catalog's model by name; the planted encoder has none, so hand it over."""
    monkeypatch.setattr(Catalog, "load_encoder", lambda self, model=None, device=None: PlantedEncoder())


def test_cli_train_eval_apply_cycle(
    home: Path, library: Path, train_csv: Path, test_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "tagger",
                "train",
                "--labels",
                str(train_csv),
                "--out",
                "bands",
                "--epochs",
                "80",
                "--home",
                str(home),
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    assert trained["labels"] == sorted(BANDS) and trained["model_id"] == "planted-bands" and trained["dim"] == 8
    assert (home / "taggers" / "bands.safetensors").is_file() and trained["enabled"] is False

    png = tmp_path / "confusion.png"
    assert main(["tagger", "eval", "bands", "--labels", str(test_csv), "--png", str(png), "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "on 16 files: accuracy 100.0%" in out and "confusion matrix" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["tagger", "apply", "bands", "--library", "--json", "--home", str(home)]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert len(applied) == 4 * 12 + 8 + 4  # every indexed file
    by_path = {Path(r["path"]): r["tags"] for r in applied}
    for f in (library / "test").rglob("*.wav"):
        (tag,) = by_path[f]
        assert tag["label"] == f.parent.name and 0.5 < tag["score"] <= 1.0
    for label in BANDS:  # a sound in one window of twenty seconds of noise
        assert by_path[library / "long" / f"long_{label}.wav"][0]["label"] == label

    with Catalog.open(home, writable=False) as catalog:  # tags are filterable in search
        hits = Engine(catalog, PlantedEncoder()).search("bird", k=100, mode="vector", filters=Filters(tags=("bird",)))
    assert {h.path for h in hits} == {Path(r["path"]) for r in applied if r["tags"][0]["label"] == "bird"}
    assert len(hits) >= 12

    assert main(["tagger", "apply", "bands", str(library / "test" / "hum" / "hum_09.wav"), "--home", str(home)]) == 0
    assert "hum" in capsys.readouterr().out


def test_folder_layout_and_cross_validation(home: Path, library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "tagger",
        "eval",
        "--from-folders",
        str(library / "train"),
        "--folds",
        "3",
        "--epochs",
        "40",
        "--home",
        str(home),
        "--json",
    ]
    assert main(args) == 0
    cv = json.loads(capsys.readouterr().out)
    assert cv["files"] == 32 and cv["folds"] == 3 and cv["accuracy"] >= 0.9 and cv["map"] >= 0.95
    assert [row["support"] for row in cv["per_class"]] == [8, 8, 8, 8]
    assert sum(map(sum, cv["confusion"])) == 32


def test_saved_and_loaded_heads_predict_identically(home: Path, library: Path, tmp_path: Path) -> None:
    with Catalog.open(home, writable=False) as catalog:
        bags = load_bags(catalog)
        labelled = resolve_labels(
            catalog, read_labels_csv(_labels_csv(tmp_path / "l.csv", _train(library))), multi_label=True
        )
    train = _of_files(bags, labelled.file_ids)
    for config in (TrainConfig(max_epochs=20), TrainConfig(multi_label=True, hidden=16, pooling="mil", max_epochs=20)):
        tagger, _, _ = fit_tagger("t", train, labelled.targets, labelled.labels, config, model_id="planted-bands")
        tagger.save(tmp_path / "heads")
        loaded = Tagger.load(tmp_path / "heads", "t")
        assert loaded.info == tagger.info
        np.testing.assert_array_equal(loaded.scores(bags), tagger.scores(bags))
        assert loaded.tags(loaded.scores(bags)) == tagger.tags(tagger.scores(bags))


def test_wrong_embedding_space_is_refused(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Catalog.open(home) as catalog, Catalog.open(tmp_path / "other") as other:
        labelled = LabelledPaths(
            "x", tuple((f.path, (f.path.parent.name,)) for f in catalog.files() if "train" in str(f.path))
        )
        tagger, _ = train_tagger(catalog, labelled, "space", TrainConfig(max_epochs=5))
        save_tagger(catalog, tagger)
        other.bind_model("another-model", 8, 10.0, 5.0)
        shutil.copytree(home / "taggers", tmp_path / "other" / "taggers")
        with pytest.raises(
            TaggerError, match="trained on embeddings of model 'planted-bands' \\(dim 8\\); this catalog"
        ):
            load_tagger(other, "space")
    assert main(["tagger", "apply", "space", "--library", "--home", str(tmp_path / "other")]) == 2
    assert "retrain it on this catalog" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "multi", "message"),
    [
        (["path,label", "{lib}/train/hum/hum_00.wav,hum", "/nowhere/x.wav,hum"], False, "not in the catalog.*nowhere"),
        (
            ["path,label", "{lib}/train/hum/hum_00.wav,", "{lib}/train/bird/bird_00.wav,bird"],
            False,
            "line 2: empty label",
        ),
        (["path,label", "{lib}/train/hum/hum_00.wav,hum;", "{lib}/train/bird/bird_00.wav,bird"], True, "empty label"),
        (["path,label", "{lib}/train/hum/hum_00.wav,hum", "{lib}/train/hum/hum_01.wav,hum"], False, "single class"),
        (["path,label", "{lib}/mix/bird+hum_0.wav,bird;hum", "{lib}/train/hum/hum_01.wav,hum"], False, "--multi-label"),
        (["file,tag", "{lib}/train/hum/hum_00.wav,hum"], False, "header `path,label`"),
        (["path,label"], False, "no labelled files"),
        (["path,label", "{lib}/train/hum/hum_00.wav,hum", "{lib}/train/bird/bird_00.wav,bird"], False, "at least 2"),
    ],
)
def test_bad_label_files_are_clear_errors(
    home: Path, library: Path, tmp_path: Path, rows: list[str], multi: bool, message: str
) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(r.format(lib=library) for r in rows) + "\n")
    with Catalog.open(home, writable=False) as catalog, pytest.raises(TaggerError, match=message):
        train_tagger(catalog, read_labels_csv(csv), "bad", TrainConfig(multi_label=multi))


def test_cli_errors_are_one_line(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "one.csv"
    csv.write_text("path,label\n/nowhere/a.wav,x\n")
    assert main(["tagger", "train", "--labels", str(csv), "--out", "x", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not in the catalog (index them first): /nowhere/a.wav" in err
    assert main(["tagger", "apply", "missing", "--library", "--home", str(home)]) == 2
    assert "no tagger named 'missing'" in capsys.readouterr().err
    assert main(["tagger", "eval", "--labels", str(csv), "--home", str(home)]) == 2
    assert "--folds" in capsys.readouterr().err


def test_finetune_encoder_is_refused_clearly(
    home: Path, train_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TaggerError, match="needs a Hugging Face CLAP model; it is not available"):
        check_finetune(PlantedEncoder())
    _planted_encoder(monkeypatch)
    args = ["tagger", "train", "--labels", str(train_csv), "--out", "ft", "--finetune-encoder", "--home", str(home)]
    assert main(args) == 2
    assert "needs a Hugging Face CLAP model" in capsys.readouterr().err
    assert not (home / "taggers" / "ft.json").exists()


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_init_starts_as_the_zero_shot_classifier(home: Path, library: Path, multi_label: bool) -> None:
    encoder = PlantedEncoder()
    with Catalog.open(home, writable=False) as catalog:
        bags = load_bags(catalog)
        labelled = resolve_labels(
            catalog,
            read_labels_csv(_labels_csv(library.parent / f"zs{multi_label}.csv", _train(library))),
            multi_label=False,
        )
    labels = labelled.labels
    prior = zero_shot_prior(encoder, labels, multi_label)
    # Pooled as the zero-shot classifier pools: max for multi-label, mean probability for single-label.
    pooling = "mil" if multi_label else "mean"
    config = TrainConfig(multi_label=multi_label, pooling=pooling, zero_shot_init=True, max_epochs=0)
    train = _of_files(bags, labelled.file_ids)
    tagger, _, _ = fit_tagger("zs", train, labelled.targets, labels, config, model_id=encoder.model_id, prior=prior)
    zs = ZeroShotClassifier(encoder, labels, multi_label=multi_label)
    assert (np.bincount(bags.owners) > 1).any()  # long files are part of the check
    expected = zs.pooled_scores(bags.vectors, bags.owners, len(bags))
    np.testing.assert_allclose(tagger.scores(bags), expected, atol=1e-5)


def test_multi_label_mixtures(home: Path, library: Path, tmp_path: Path) -> None:
    files = _train(library) + sorted((library / "mix").glob("*_[0-3].wav"))
    csv = tmp_path / "multi.csv"
    csv.write_text("path,label\n" + "\n".join(f"{f},{_labels_of(f)}" for f in files) + "\n")
    with Catalog.open(home) as catalog:
        tagger, validation = train_tagger(
            catalog, read_labels_csv(csv), "multi", TrainConfig(multi_label=True, max_epochs=150)
        )
        assert validation.multi_label and len(tagger.info.thresholds) == 4
        held_out = sorted((library / "mix").glob("*_[4-7].wav"))
        results = tag_paths(catalog, tagger, held_out)
    for f, r in zip(held_out, results, strict=True):
        assert {label for label, _ in r.tags} == set(_labels_of(f).split(";")), r


def _labels_of(f: Path) -> str:
    return f.parent.name if f.parent.parent.name == "train" else ";".join(f.stem.split("_")[0].split("+"))


def _catalog_with_taggers(lib: Path, home: Path, db_url: str | None) -> None:
    """A catalog of `lib` with three taggers saved: "on" (enabled), "off", and "foreign" (enabled, another model)."""
    _write_library(lib, train=3, test=0)
    with Catalog.open(home, db_url=db_url) as catalog:
        index_paths(catalog, PlantedEncoder(), [lib])
        labelled = LabelledPaths(
            "x", tuple((f.path, (f.path.parent.name,)) for f in catalog.files() if "train" in str(f.path))
        )
        tagger, _ = train_tagger(catalog, labelled, "on", TrainConfig(max_epochs=50))
        save_tagger(catalog, tagger, enabled=True)
        save_tagger(catalog, Tagger(tagger.head, replace(tagger.info, name="off")))
        save_tagger(catalog, Tagger(tagger.head, replace(tagger.info, name="foreign", model_id="x")), enabled=True)
    write(lib / "new" / "fresh.wav", _clip(BANDS["voice"], 7))


def _assert_only_the_new_file_is_tagged(home: Path, db_url: str | None) -> None:
    with Catalog.open(home, db_url=db_url) as catalog:
        tagged = Engine(catalog, PlantedEncoder()).search("voice", k=50, filters=Filters(tags=("voice",)))
        assert [(h.path.name, h.tags) for h in tagged] == [("fresh.wav", ("voice",))]  # the new file, by "on" only
        assert apply_enabled_taggers(catalog, []) == {}


def test_enabled_taggers_tag_new_files_at_index_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    db_url: str | None,
) -> None:
    lib, home = tmp_path / "lib", tmp_path / "home"
    _catalog_with_taggers(lib, home, db_url)
    _planted_encoder(monkeypatch)
    with caplog.at_level(logging.WARNING):
        assert main(["index", str(lib), "--home", str(home), "--json", *(["--db-url", db_url] if db_url else [])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["added"], out["tagged"], out["captioned"]) == (1, {"on": 1}, 0)
    assert "tagger foreign skipped" in caplog.text
    _assert_only_the_new_file_is_tagged(home, db_url)


def test_files_indexed_over_http_are_tagged_by_the_enabled_taggers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, db_url: str | None
) -> None:
    """The server's indexing job runs what `soundsearch index` runs (search.indexing)."""
    lib, home = tmp_path / "lib", tmp_path / "home"
    _catalog_with_taggers(lib, home, db_url)
    app = create_app(Settings(home=home, db_url=db_url, library_roots=[lib]), encoder=PlantedEncoder())
    with TestClient(app) as client, caplog.at_level(logging.WARNING):
        started = client.post("/api/index", json={"paths": [str(lib / "new")]})
        assert started.status_code == 202, started.text
        job = wait_for(client, started.json()["id"])
        assert job["state"] == "done", job
        assert (job["summary"]["added"], job["summary"]["tagged"]) == (1, {"on": 1})
        assert job["stage"] == "planning the vector index"
        hits = client.get("/api/search", params={"q": "voice", "tag": "voice"}).json()["hits"]
        assert [(h["name"], h["tags"]) for h in hits] == [("fresh.wav", ["voice"])]  # served at once
    assert "tagger foreign skipped" in caplog.text
    _assert_only_the_new_file_is_tagged(home, db_url)


def test_threshold_calibration_and_splits() -> None:
    scores = np.array([[0.9], [0.8], [0.4], [0.3], [0.2]], dtype=np.float32)
    targets = np.array([[True], [True], [False], [True], [False]])
    # Best F1 keeps the top four (2·3 / (4 + 3) = 0.857 beats 2·2 / (2 + 3) = 0.8): cut between 0.3 and 0.2.
    np.testing.assert_allclose(calibrate_thresholds(scores, targets), [0.25])
    rng = np.random.default_rng(0)
    targets = np.zeros((30, 3), dtype=bool)
    targets[np.arange(30), np.repeat([0, 1, 2], [20, 8, 2])] = True
    train, val = split_validation(targets, 0.2, rng)
    assert sorted(targets[val].sum(axis=0)) == [1, 2, 4] and not set(train) & set(val)
    assert (targets[train].sum(axis=0) >= 1).all()
    folds = stratified_folds(targets, 4, rng)
    per_fold = np.array([targets[folds == f].sum(axis=0) for f in range(4)])
    assert (per_fold[:, 0] == 5).all() and (per_fold[:, 1] == 2).all() and per_fold[:, 2].sum() == 2


def test_cross_validation_needs_two_folds(home: Path) -> None:
    with Catalog.open(home, writable=False) as catalog:
        bags = load_bags(catalog)
    with pytest.raises(TaggerError, match="at least 2 folds"):
        cross_validate_bags(bags, np.eye(2, dtype=bool)[np.arange(len(bags)) % 2], ("a", "b"), TrainConfig(), 1)


def test_weight_decay_left_open_is_chosen_by_validation_loss(home: Path, library: Path) -> None:
    from search.tagger_config import WEIGHT_DECAYS
    from search.tagger_model import train_head

    with Catalog.open(home, writable=False) as catalog:
        bags = load_bags(catalog)
        labelled = resolve_labels(
            catalog, read_labels_csv(_labels_csv(library.parent / "wd.csv", _train(library))), multi_label=False
        )
    train = _of_files(bags, labelled.file_ids)
    base = TrainConfig(max_epochs=40)
    fixed = {
        wd: train_head(train, labelled.targets, labelled.labels, replace(base, weight_decay=wd)) for wd in WEIGHT_DECAYS
    }
    chosen = train_head(train, labelled.targets, labelled.labels, base)
    best = min(fixed, key=lambda wd: fixed[wd].val_loss)
    assert chosen.weight_decay == best
    assert chosen.val_loss == pytest.approx(fixed[best].val_loss)
    np.testing.assert_array_equal(chosen.val_index, fixed[best].val_index)  # one split for every candidate


@pytest.mark.parametrize("multi_label", [False, True])
def test_mean_pooling_is_the_mean_probability_and_learns_from_confident_mistakes(multi_label: bool) -> None:
    from search.tagger_model import pool_logits, to_probabilities

    logits = torch.tensor([[20.0, -20.0], [18.0, -17.0], [1.0, 2.0]], requires_grad=True)
    owners = torch.tensor([0, 0, 1])
    pooled = pool_logits(logits, owners, 2, "mean", multi_label)
    per_segment = to_probabilities(logits, multi_label).detach()
    expected = torch.stack([per_segment[:2].mean(dim=0), per_segment[2]])
    torch.testing.assert_close(to_probabilities(pooled, multi_label).detach(), expected)
    targets = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    if multi_label:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(pooled, targets)
    else:
        loss = -(targets * torch.log_softmax(pooled, dim=1)).sum(dim=1).mean()
    loss.backward()
    assert logits.grad is not None and float(logits.grad[:2].abs().sum()) > 0.1  # saturated, still learning
