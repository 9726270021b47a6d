"""UCS: the category list as users export it, a CatID per file (a tag, filterable), UCS names and renames.

The planted encoder's text tower understands band words ("hiss", "bird", "chime", ...), and so do the prompts
built from the real UCS categories in tests/data (AIR HISS, BIRDS SONGBIRD, CLOCKS CHIME, ...): a tone in the
"hiss" band must come out as AIRHiss.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from api.cli import main
from api.settings import Settings
from indexer.filetags import read_file_tags
from indexer.pipeline import index_paths
from search.query import Filters
from search.renaming import Rename, apply_renames, plan_renames
from search.ucs import UcsError, check_id, fx_name, ucs_prompts
from search.ucs_list import UcsListError, load_ucs_csv
from storage.catalog import Catalog
from storage.queries import FileFilter
from storage.schema import FileRow
from tests.planted import BAND_WORDS, PlantedEncoder, tone, write

UCS_CSV = Path(__file__).parent / "data" / "ucs_v8.2.1_sample.csv"
HEADER = "Category,SubCategory,CatID,CatShort,Explanations,Synonyms - Comma Separated"


# --- the list --------------------------------------------------------------------------------------


def test_the_spreadsheet_export_loads() -> None:
    categories = load_ucs_csv(UCS_CSV)
    assert len(categories) == 13
    hiss = categories[0]
    assert (hiss.cat_id, hiss.category, hiss.subcategory, hiss.cat_short) == ("AIRHiss", "AIR", "HISS", "AIR")
    assert hiss.explanation.startswith("Slow air releases") and hiss.synonyms[:3] == ("carbon", "co2", "dioxide")
    assert [c.cat_id for c in categories if c.cat_short == "RAIN"] == ["RAIN", "RAINMetl"]


def _variant(text: str, how: str) -> bytes:
    """The fixture as other spreadsheet programs and locales export it."""
    lines = text.splitlines()
    if how == "utf16-tab":  # Excel's "Unicode text"
        import csv
        import io

        out = io.StringIO()
        csv.writer(out, delimiter="\t", lineterminator="\r\n").writerows(csv.reader(lines))
        return out.getvalue().encode("utf-16")
    if how == "cp1252-semicolon":  # Excel's "CSV" where the decimal separator is a comma
        import csv
        import io

        out = io.StringIO()
        csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(csv.reader(lines))
        return out.getvalue().replace("Slow air releases", "Slow air releases (café)").encode("cp1252")
    if how == "title-and-translations":
        rows = [line + ',"x","y"' for line in lines[1:]]
        header = lines[0] + ",Category_fr,SubCategory_fr"
        return "\n".join(["UCS v8.2.1,,,", ",,,", header, *rows[:5], ",,,,,", *rows[5:]]).encode("utf-8")
    return "\n".join(lines).encode("utf-8")  # no byte-order mark, LF


@pytest.mark.parametrize("how", ["utf16-tab", "cp1252-semicolon", "title-and-translations", "plain-utf8"])
def test_other_exports_load_the_same(tmp_path: Path, how: str) -> None:
    want = load_ucs_csv(UCS_CSV)
    path = tmp_path / "ucs.csv"
    path.write_bytes(_variant(UCS_CSV.read_text(encoding="utf-8-sig"), how))
    got = load_ucs_csv(path)
    assert [(c.cat_id, c.category, c.subcategory, c.synonyms) for c in got] == [
        (c.cat_id, c.category, c.subcategory, c.synonyms) for c in want
    ]
    if how == "cp1252-semicolon":
        assert got[0].explanation.startswith("Slow air releases (café)")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Name,Description\nDoor,a door\n", "no CatID column"),
        (f"{HEADER}\nDOORS,WOOD,DOORWood,DOOR,,\nDOORS,METAL,doorwood,DOOR,,\n", "listed twice .first on line 2"),
        (f"{HEADER}\nDOORS,WOOD,DOOR Wood,DOOR,,\n", "line 2: CatID 'DOOR Wood' is not letters and digits"),
        (f"{HEADER}\nDOORS,,DOORWood,DOOR,,\n", "has no Category or SubCategory"),
        (f"{HEADER}\n,,,,,\n", "lists no categories"),
        ("CatID,CatShort\nDOORWood,DOOR\n", "no Category or SubCategory column"),
    ],
)
def test_lists_that_cannot_be_trusted_are_refused_with_the_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "ucs.csv"
    path.write_text(text)
    with pytest.raises(UcsListError, match=says):
        load_ucs_csv(path)
    with pytest.raises(UcsListError, match="cannot read"):
        load_ucs_csv(tmp_path / "missing.csv")


def test_prompts_describe_the_category_in_words() -> None:
    hiss = load_ucs_csv(UCS_CSV)[0]
    assert ucs_prompts(hiss) == [
        "the sound of hiss air",
        "air, hiss",
        "hiss air: carbon, co2, dioxide, discharge, exhaust, expel, helium, hissing",
    ]


def test_fx_names_and_ids() -> None:
    assert fx_name("a wooden door creaks open slowly in the distance", "x", "Wood") == "Wooden Door Creaks Open"
    assert fx_name(None, "door_creak_03", "Wood") == "Door Creak 03"
    assert fx_name(None, "DoorCreakOld", "Wood") == "Door Creak Old"
    assert fx_name(None, "___", "WOOD") == "Wood"
    assert fx_name("Supercalifragilisticexpialidocious", "x", "Wood") == "Supercalifragilisticexpia"
    assert all(len(fx_name(c, "x", "y")) <= 25 for c in ("a b c d e f g h i j k l m n o p", "wind " * 20))
    assert check_id(" TN ", "CreatorID") == "TN"
    for bad in ("T_N", "../up", "a/b", "", "what?"):
        with pytest.raises(UcsError, match="cannot go into a UCS file name"):
            check_id(bad, "CreatorID")


# --- a library -------------------------------------------------------------------------------------

BANDS = {"hiss": "AIRHiss", "bird": "BIRDSong", "chime": "CLOCKChim", "rumble": "DSGNRmbl", "voice": "VOXMale"}


def _library(root: Path) -> dict[str, Path]:
    files = {
        "hiss": write(root / "leaks" / "air_leak_01.wav", tone(BAND_WORDS["hiss"], 1.0)),
        "bird": write(root / "Birds" / "robin.wav", tone(BAND_WORDS["bird"], 1.0)),
        "bird2": write(root / "Birds" / "thrush.wav", tone(BAND_WORDS["bird"], 1.2)),
        "chime": write(root / "clock chime.flac", tone(BAND_WORDS["chime"], 1.0), "FLAC"),
        "rumble": write(root / "rumble.wav", tone(BAND_WORDS["rumble"], 1.0)),
        "voice": write(root / "guy.wav", tone(BAND_WORDS["voice"], 1.0)),
        # Named the UCS way by a person already; its sound (the engine band) matches no category here.
        "named": write(root / "DOORWood_Old Creak_JD_LIB.wav", tone(BAND_WORDS["engine"], 1.0)),
    }
    return files


@pytest.fixture()
def planted_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loads the catalog's model by name; the planted encoder has none, so hand it over."""
    monkeypatch.setattr(Catalog, "load_encoder", lambda self, model=None, device=None: PlantedEncoder())


@pytest.fixture()
def library(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Path]]]:
    files = _library(tmp_path / "lib")
    home = tmp_path / "home"
    with Catalog.open(home) as catalog:
        index_paths(catalog, PlantedEncoder(), [tmp_path / "lib"])
        by_path = {str(f.path): f.id for f in catalog.files()}
        with catalog.session() as s:  # two birds described alike: their suggested names collide
            for key in ("bird", "bird2"):
                s.execute(
                    update(FileRow).where(FileRow.id == by_path[str(files[key])]).values(caption="a bird singing")
                )
    yield home, files


def _ucs(home: Path, *args: str) -> int:
    return main(["ucs", "--library", "--ucs-csv", str(UCS_CSV), "--home", str(home), *args])


def test_each_file_gets_a_category_tag_and_a_ucs_name(
    library: tuple[Path, dict[str, Path]], planted_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    home, files = library
    assert _ucs(home, "--json") == 0
    rows = {Path(r["path"]): r for r in json.loads(capsys.readouterr().out)["files"]}
    for key, cat_id in BANDS.items():
        assert rows[files[key]]["cat_id"] == cat_id, key
    named = rows[files["named"]]
    assert (named["cat_id"], named["score"], named["from_name"], named["fx_name"]) == (
        "DOORWood",
        1.0,
        True,
        "Old Creak",
    )
    assert named["suggested_name"] == files["named"].name
    assert rows[files["hiss"]]["suggested_name"] == "AIRHiss_Air Leak 01_CreatorID_SourceID.wav"
    assert rows[files["bird"]]["suggested_name"] == "BIRDSong_Bird Singing_CreatorID_SourceID.wav"  # the caption
    assert rows[files["chime"]]["suggested_name"].endswith(".flac")

    with Catalog.open(home) as catalog:
        ucs_tags = catalog.tags_from("ucs", [r["file_id"] for r in rows.values()])
        assert ucs_tags[rows[files["hiss"]]["file_id"]][0][0] == "AIRHiss"

        def passing(filters: Filters) -> set[Path]:
            return {Path(p) for p in catalog.paths(sorted(FileFilter(catalog, filters).all_files())).values()}

        assert passing(Filters(ucs=("AIR",))) == {files["hiss"]}  # the whole AIR category (CatShort)
        assert passing(Filters(ucs=("airhiss",))) == {files["hiss"]}  # one CatID, any case
        assert passing(Filters(ucs=("BIRD", "DOOR"))) == {files["bird"], files["bird2"], files["named"]}
        assert passing(Filters(ucs=("RAIN",))) == set()
        assert passing(Filters(tags=("BIRDSong",))) == {files["bird"], files["bird2"]}

    assert main(["search", "anything", "--ucs", "CLOCK", "--json", "--home", str(home)]) == 0
    assert [h["path"] for h in json.loads(capsys.readouterr().out)] == [str(files["chime"])]
    with TestClient(create_app(Settings(home=home), encoder=PlantedEncoder())) as client:
        hits = client.get("/api/search", params={"q": "anything", "ucs": ["VOX", "DSGN"]}).json()["hits"]
    assert {h["name"] for h in hits} == {"guy.wav", "rumble.wav"}


def test_apply_names_renames_files_and_the_catalog_follows_without_embedding(
    library: tuple[Path, dict[str, Path]], planted_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    home, files = library
    with Catalog.open(home) as catalog:
        before = {f.id: (f.content_hash, f.path.parent) for f in catalog.files()}
        segments = np.sort(catalog.segment_ids())
    files["voice"].chmod(0o444)  # a file its owner protected is not renamed
    raw = {k: p.read_bytes() for k, p in files.items()}

    assert _ucs(home, "--apply-names", "--dry-run", "--creator", "TN", "--source", "MYLIB") == 0
    assert "6 file(s) would be renamed" in capsys.readouterr().out
    assert all(p.exists() for p in files.values())

    assert _ucs(home, "--apply-names", "--creator", "TN", "--source", "MYLIB") == 1  # one file refused: say so
    out = capsys.readouterr().out
    assert f"not renamed: {files['voice']}: the file is read-only" in out and "renamed 5 of 6 file(s)" in out
    lib = files["hiss"].parent.parent
    renamed = {
        "hiss": lib / "leaks" / "AIRHiss_Air Leak 01_TN_MYLIB.wav",
        "bird": lib / "Birds" / "BIRDSong_Bird Singing_TN_MYLIB.wav",
        "bird2": lib / "Birds" / "BIRDSong_Bird Singing_TN_MYLIB_02.wav",  # UCS UserData keeps names apart
        "chime": lib / "CLOCKChim_Clock Chime_TN_MYLIB.flac",
        "rumble": lib / "DSGNRmbl_Rumble_TN_MYLIB.wav",
        "voice": files["voice"],
        "named": files["named"],
    }
    assert {k: p.read_bytes() for k, p in renamed.items()} == raw  # same bytes under the new names
    assert not any(files[k].exists() for k in ("hiss", "bird", "bird2", "chime", "rumble"))
    with Catalog.open(home) as catalog:
        assert {f.id: (f.content_hash, f.path.parent) for f in catalog.files()} == before
        assert {f.path for f in catalog.files()} == set(renamed.values())
        assert np.array_equal(np.sort(catalog.segment_ids()), segments)
        again = index_paths(catalog, PlantedEncoder(), [lib])  # nothing to embed, nothing moved or removed
        assert (again.added, again.updated, again.moved, again.removed, again.unchanged) == (0, 0, 0, 0, 7)
        hits = catalog.text.search("singing", 10)  # the new name's words are searchable
        assert len(hits) == 2

    files["voice"].chmod(0o644)
    assert _ucs(home, "--apply-names", "--creator", "TN", "--source", "MYLIB") == 0
    assert "renamed 1 of 1 file(s)" in capsys.readouterr().out
    assert _ucs(home, "--apply-names", "--creator", "TN", "--source", "MYLIB") == 0  # all named now
    assert "renamed 0 of 0 file(s)" in capsys.readouterr().out


def test_a_rename_that_cannot_happen_leaves_the_file_and_its_entry(library: tuple[Path, dict[str, Path]]) -> None:
    home, files = library
    with Catalog.open(home) as catalog:
        ids = {str(f.path): f.id for f in catalog.files()}
        hiss, rumble = ids[str(files["hiss"])], ids[str(files["rumble"])]
        plan = plan_renames([(hiss, files["hiss"], "AIRHiss_Leak_TN_LIB.wav"), (rumble, files["rumble"], "new.wav")])
        (files["hiss"].parent / "AIRHiss_Leak_TN_LIB.wav").write_bytes(b"someone else's file")  # meanwhile
        outside = Rename(rumble, files["rumble"], files["hiss"].parent / "moved.wav")
        report = apply_renames(catalog, [*plan[:1], outside])
        assert [e["reason"] for e in report.errors] == [
            "AIRHiss_Leak_TN_LIB.wav already exists in the folder: not renamed",
            f"{outside.new} is outside the file's folder: not renamed",
        ]
        assert report.renamed == []
        assert (files["hiss"].parent / "AIRHiss_Leak_TN_LIB.wav").read_bytes() == b"someone else's file"
        assert files["hiss"].exists() and files["rumble"].exists()
        assert catalog.paths([hiss, rumble]) == {hiss: str(files["hiss"]), rumble: str(files["rumble"])}

        gone = plan_renames([(rumble, files["rumble"], "x.wav")])
        files["rumble"].unlink()
        assert "no longer there" in apply_renames(catalog, gone).errors[0]["reason"]


def test_ucs_write_tags_puts_the_category_into_the_files(
    library: tuple[Path, dict[str, Path]], planted_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    home, files = library
    assert _ucs(home, "--write-tags", "--dry-run", "--creator", "TN") == 0
    assert "CATID        AIRHiss" in capsys.readouterr().out
    assert read_file_tags(files["hiss"]).cat_id is None

    assert _ucs(home, "--write-tags", "--creator", "TN") == 0
    assert "wrote tags into 7 file(s)" in capsys.readouterr().out
    tags = read_file_tags(files["bird"])
    assert (tags.cat_id, tags.category, tags.subcategory, tags.fx_name) == (
        "BIRDSong",
        "BIRDS",
        "SONGBIRD",
        "Bird Singing",
    )
    assert (tags.description, tags.creator_id, tags.source_id) == ("a bird singing", "TN", None)
    named = read_file_tags(files["named"])  # its IDs come from its name
    assert (named.cat_id, named.fx_name, named.creator_id, named.source_id) == ("DOORWood", "Old Creak", "TN", "LIB")
    assert read_file_tags(files["chime"]).cat_id == "CLOCKChim"  # FLAC: Vorbis comments
    with Catalog.open(home) as catalog:
        again = index_paths(catalog, PlantedEncoder(), [files["hiss"].parent.parent])
        assert (again.added, again.updated, again.unchanged) == (0, 0, 7)


def test_bad_requests_are_one_sentence(
    library: tuple[Path, dict[str, Path]], planted_model: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home, _ = library
    assert _ucs(home, "--apply-names") == 2
    assert "--apply-names needs --creator ID and --source ID" in capsys.readouterr().err
    assert _ucs(home, "--creator", "A_B") == 2
    assert "cannot go into a UCS file name" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    shutil.copy(UCS_CSV, bad)
    bad.write_text("x,y\n")
    assert main(["ucs", "--library", "--ucs-csv", str(bad), "--home", str(home)]) == 2
    assert "no CatID column" in capsys.readouterr().err
    assert main(["ucs", str(tmp_path / "nope.wav"), "--ucs-csv", str(UCS_CSV), "--home", str(home)]) == 2
    assert "not in the catalog" in capsys.readouterr().err
