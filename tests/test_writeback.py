"""Tags written into the files themselves: every format keeps its sound bit for bit, the indexer reads the tags
back, the catalog does not embed a retagged file again, and a write that fails half-way changes nothing.

Every file is generated here; the full disk and the read-only folder are real (a small tmpfs), not mocked.
"""

from __future__ import annotations

import shutil
import stat
import struct
import subprocess
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.ogg import OggPage
from sqlalchemy import update

from api.cli import main
from indexer import riff
from indexer.filetags import WriteBackError, read_file_tags, write_file_tags
from indexer.metadata import read_embedded_text
from indexer.pipeline import index_paths
from indexer.tagfields import TagFields
from search.writeback import known_fields, write_back
from storage.catalog import Catalog
from storage.schema import FileRow
from tests.hostile import tmpfs
from tests.planted import PlantedEncoder, tone, write

SR = 48_000
TAGS = TagFields(
    description="Rain on a tin roof, close, café terrace",
    keywords=("rain", "roof", "metal"),
    fx_name="Rain Tin Roof",
    cat_id="RAINMetl",
    category="RAIN",
    subcategory="METAL",
    creator_id="TN",
    source_id="MYLIB",
)
# name, libsndfile format, subtype
FORMATS = {
    "wav16": ("x.wav", "WAV", "PCM_16"),
    "wav24": ("x.wav", "WAV", "PCM_24"),
    "wavfloat": ("x.wav", "WAV", "FLOAT"),
    "flac": ("x.flac", "FLAC", "PCM_24"),
    "vorbis": ("x.ogg", "OGG", "VORBIS"),
    "opus": ("x.opus", "OGG", "OPUS"),
    "mp3": ("x.mp3", "MP3", "MPEG_LAYER_III"),
}


def _signal(seconds: float = 0.5, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    return wave.astype(np.float32)


def _make(folder: Path, kind: str) -> Path:
    name, fmt, subtype = FORMATS[kind]
    path = folder / name
    sf.write(path, _signal(), SR, format=fmt, subtype=subtype)
    return path


def _payload(path: Path) -> bytes | list[bytes]:
    """The coded sound and nothing else: WAV `data` bytes, FLAC frames, Ogg audio packets, MP3 frames."""
    raw = path.read_bytes()
    if raw[:4] == b"RIFF":
        chunk = riff.layout(path).first(b"data")
        assert chunk is not None
        return raw[chunk.data_offset : chunk.data_offset + chunk.size]
    if raw[:4] == b"fLaC":
        pos, last = 4, False
        while not last:  # metadata blocks: a 1-bit "last" flag, 7-bit type, 24-bit length
            last, length = bool(raw[pos] & 0x80), int.from_bytes(raw[pos + 1 : pos + 4], "big")
            pos += 4 + length
        return raw[pos:]
    if raw[:4] == b"OggS":
        with open(path, "rb") as f:
            pages = []
            while f.tell() < len(raw):
                pages.append(OggPage(f))
        headers = 2 if raw.find(b"OpusHead") >= 0 else 3  # Opus: head, tags; Vorbis: id, comment, setup
        return OggPage.to_packets(pages)[headers:]
    start = 10 + _syncsafe(raw[6:10]) if raw[:3] == b"ID3" else 0
    end = len(raw) - 128 if raw[-128:-125] == b"TAG" else len(raw)
    return raw[start:end]


def _syncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def _leftovers(folder: Path, *keep: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p not in keep)


@pytest.mark.parametrize("kind", list(FORMATS))
def test_tags_go_in_and_the_sound_stays_bit_for_bit(tmp_path: Path, kind: str) -> None:
    path = _make(tmp_path, kind)
    path.chmod(0o640)
    samples, payload, info = sf.read(path)[0], _payload(path), mutagen.File(path).info.pprint()

    write_file_tags(path, TAGS)

    assert np.array_equal(sf.read(path)[0], samples)
    assert _payload(path) == payload
    assert mutagen.File(path).info.pprint() == info
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _leftovers(tmp_path, path) == []
    assert read_file_tags(path) == TAGS
    embedded = read_embedded_text(path)  # what an index run stores and searches
    assert embedded.title == "Rain Tin Roof"
    assert embedded.comment is not None
    assert all(w in embedded.comment for w in ("Rain on a tin roof", "rain, roof, metal", "RAIN METAL"))

    again = replace(TAGS, cat_id="RAINWood", subcategory="WOOD", keywords=("rain",))
    write_file_tags(path, again)  # a second write replaces the fields, it does not pile them up
    assert read_file_tags(path) == again
    assert np.array_equal(sf.read(path)[0], samples) and _payload(path) == payload


def test_wav_bext_takes_the_description_in_ascii(tmp_path: Path) -> None:
    path = _make(tmp_path, "wav24")
    write_file_tags(path, TAGS)
    assert riff.read_chunk(path, b"bext", 256) == b"Rain on a tin roof, close, cafe terrace".ljust(256, b"\x00")
    write_file_tags(path, replace(TAGS, description="Heavy rain " * 30))  # ours: it follows, cut at a word
    bext = riff.read_chunk(path, b"bext", 1 << 16)
    assert bext is not None and len(bext) == 602
    assert bext[:256] == (b"Heavy rain " * 22 + b"Heavy rain").ljust(256, b"\x00")


def _chunk(chunk_id: bytes, data: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)


def _wav_with(path: Path, *extra: bytes, after_data: bytes = b"") -> Path:
    """A WAV (with a LIST/INFO chunk from libsndfile) whose chunks are `extra` before `data`, `after_data` after."""
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as f:
        f.title, f.comment = "take 3", "recorded on the roof"
        f.write(_signal(0.2))
    layout = riff.layout(path)
    raw = path.read_bytes()
    data = layout.first(b"data")
    assert data is not None
    body = b"".join(raw[c.offset : c.data_offset + c.size + (c.size & 1)] for c in layout.chunks if c.id != b"data")
    data_bytes = raw[data.offset : data.data_offset + data.size + (data.size & 1)]
    form = b"WAVE" + body + b"".join(extra) + data_bytes + after_data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(form)) + form)
    return path


RECORDER_BEXT = (
    b"sSPEED=023.976-ND\r\nsTAKE=03\r\n".ljust(256, b"\x00")
    + b"Sound Devices".ljust(32, b"\x00")
    + b"REF-0042".ljust(32, b"\x00")
    + b"2026-11-3008:15:00"
    + struct.pack("<QH", 1_234_567, 1)
    + bytes(64 + 10 + 180)
    + b"A=PCM,F=48000,W=24,M=stereo\r\n"
)
RECORDER_IXML = (
    b"<?xml version='1.0' encoding='UTF-8'?><BWFXML><IXML_VERSION>1.61</IXML_VERSION><PROJECT>Roofs</PROJECT>"
    b"<NOTE>tin roof, light rain</NOTE><!-- written by the recorder --><USER>free text"
    b"<MICROPHONE>MKH416</MICROPHONE></USER></BWFXML>\x00"
)


def test_every_other_chunk_is_copied_byte_for_byte(tmp_path: Path) -> None:
    odd = _chunk(b"xtra", b"abc")  # odd size: one pad byte, which must stay for the chunks after it
    path = _wav_with(
        tmp_path / "take.wav",
        _chunk(b"bext", RECORDER_BEXT),
        odd,
        _chunk(b"iXML", RECORDER_IXML),
        after_data=_chunk(b"cue ", b"\x00" * 4),
    )
    before = riff.layout(path)
    raw = path.read_bytes()

    write_file_tags(path, TAGS)

    after = riff.layout(path)
    new = path.read_bytes()
    assert [c.id for c in after.chunks] == [c.id for c in before.chunks]  # same order, nothing added
    assert struct.unpack("<I", new[4:8])[0] == len(new) - 8
    for old_chunk, new_chunk in zip(before.chunks, after.chunks, strict=True):
        if old_chunk.id != b"iXML":
            old_bytes = raw[old_chunk.offset : old_chunk.data_offset + old_chunk.size + (old_chunk.size & 1)]
            assert new[new_chunk.offset : new_chunk.data_offset + new_chunk.size + (new_chunk.size & 1)] == old_bytes
    # The recorder's bext (its Description is machine data) is kept whole; iXML keeps all it had.
    ixml = riff.read_chunk(path, b"iXML", 1 << 20)
    assert ixml is not None
    root = ElementTree.fromstring(ixml)
    assert root.findtext("PROJECT") == "Roofs" and root.findtext("NOTE") == "tin roof, light rain"
    assert root.findtext("USER/MICROPHONE") == "MKH416" and root.findtext("USER/CATID") == "RAINMetl"
    assert b"<!-- written by the recorder -->" in ixml
    tags = read_file_tags(path)
    assert (tags.note, tags.cat_id, tags.description) == ("tin roof, light rain", "RAINMetl", TAGS.description)
    comment = read_embedded_text(path).comment or ""
    assert "recorded on the roof" in comment and "Rain on a tin roof" in comment and "tin roof, light rain" in comment

    write_file_tags(path, replace(TAGS, description="Heavier rain"))  # the recorder's description survives again
    assert riff.read_chunk(path, b"bext", 1 << 16) == RECORDER_BEXT


def test_a_missing_pad_byte_at_the_end_is_restored(tmp_path: Path) -> None:
    path = _wav_with(tmp_path / "x.wav", after_data=_chunk(b"note", b"odd"))
    path.write_bytes(path.read_bytes()[:-1])  # a writer that left out the final pad byte
    write_file_tags(path, TAGS)
    assert path.read_bytes().endswith(b"note\x03\x00\x00\x00odd\x00")
    assert read_file_tags(path) == TAGS


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda p: sf.write(p, _signal(0.1), SR, format="RF64"), "RF64"),
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "runs past the end"),
        (lambda p: _wav_with(p, _chunk(b"iXML", b"<BWFXML><NOTE>unclosed")), "not well-formed XML"),
        (lambda p: p.write_bytes(b"RIFX" + p.read_bytes()[4:]), "RIFX"),
    ],
    ids=["rf64", "truncated", "broken-ixml", "rifx"],
)
def test_odd_wav_files_are_refused_and_left_alone(tmp_path: Path, spoil: object, says: str) -> None:
    path = _make(tmp_path, "wav16")
    spoil(path)  # type: ignore[operator]
    raw = path.read_bytes()
    with pytest.raises(WriteBackError, match=says) as raised:
        write_file_tags(path, TAGS)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    assert path.read_bytes() == raw and _leftovers(tmp_path, path) == []


def test_a_read_only_file_is_left_alone_even_for_root(tmp_path: Path) -> None:
    path = _make(tmp_path, "flac")
    path.chmod(0o444)
    raw = path.read_bytes()
    with pytest.raises(WriteBackError, match="read-only"):
        write_file_tags(path, TAGS)
    assert path.read_bytes() == raw and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_a_symbolic_link_is_not_replaced_by_a_copy(tmp_path: Path) -> None:
    target = _make(tmp_path, "wav16")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    raw = target.read_bytes()
    with pytest.raises(WriteBackError, match="symbolic link"):
        write_file_tags(link, TAGS)
    assert link.is_symlink() and target.read_bytes() == raw


def test_formats_without_tag_write_back_are_named(tmp_path: Path) -> None:
    path = tmp_path / "x.aiff"
    sf.write(path, _signal(0.1), SR)
    with pytest.raises(WriteBackError, match="WAV, FLAC, Ogg Vorbis, Opus and MP3 files only"):
        write_file_tags(path, TAGS)


@pytest.mark.parametrize("kind", ["wav24", "flac"])
def test_a_full_disk_leaves_the_original_whole(tmp_path: Path, kind: str) -> None:
    with tmpfs(tmp_path / "disk", "512k") as disk:
        path = shutil.copy(_make(tmp_path, kind), disk / FORMATS[kind][0])
        (disk / "filler").write_bytes(bytes(shutil.disk_usage(disk).free - 16_384))
        raw = Path(path).read_bytes()
        with pytest.raises(WriteBackError, match="No space left on device"):
            write_file_tags(path, TAGS)
        assert Path(path).read_bytes() == raw
        assert _leftovers(disk, Path(path), disk / "filler") == []


def test_a_read_only_folder_leaves_the_original_whole(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        path = Path(shutil.copy(_make(tmp_path, "wav16"), disk / "x.wav"))
        raw = path.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(WriteBackError, match="mounted read-only"):
            write_file_tags(path, TAGS)
        assert path.read_bytes() == raw


def test_a_crash_half_way_leaves_the_original_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _make(tmp_path, "wav24")
    raw = path.read_bytes()
    copy = riff._copy

    def copy_then_die(f: object, out: object, n: int) -> None:
        copy(f, out, n // 2)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of the data chunk

    monkeypatch.setattr(riff, "_copy", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_file_tags(path, TAGS)
    assert path.read_bytes() == raw and _leftovers(tmp_path, path) == []


def _library(root: Path) -> list[Path]:
    return [
        write(root / "thunder_far.wav", tone(0, 1.0)),
        write(root / "thunder_near.flac", tone(1, 1.0), "FLAC"),
        write(root / "hum.ogg", tone(2, 1.0), "OGG"),
    ]


def test_retagged_files_are_not_embedded_again_and_a_new_catalog_reads_their_tags(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    files = _library(lib)
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, PlantedEncoder(), [lib])
        ids = [f.id for f in catalog.files()]
        catalog.set_tags("zeroshot", {i: [("thunderclap", 0.9)] for i in ids})
        with catalog.session() as s:
            s.execute(update(FileRow).values(caption="a storm rolling over the valley"))
        segments = catalog.segment_ids()

        report = write_back(catalog, known_fields(catalog, ids))
        assert (sorted(report.written), report.errors) == (sorted(map(str, files)), [])

        again = index_paths(catalog, PlantedEncoder(), [lib])
        assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
        assert np.array_equal(np.sort(catalog.segment_ids()), np.sort(segments))
        assert all("valley" in catalog_comment(catalog, r.id) for r in catalog.files())  # the words it now carries

    with Catalog.open(tmp_path / "fresh") as fresh:  # knows nothing but what the files now carry
        index_paths(fresh, PlantedEncoder(), [lib])
        for record in fresh.files():
            comment = catalog_comment(fresh, record.id)
            assert "a storm rolling over the valley" in comment and "thunderclap" in comment
        fresh.refresh()
        hits = fresh.text.search("valley", 10)
        assert len(hits) == 3


def catalog_comment(catalog: Catalog, file_id: int) -> str:
    with catalog.session() as s:
        row = s.get(FileRow, file_id)
        assert row is not None
        return row.comment or ""


def test_write_tags_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    files = _library(lib)
    home = str(tmp_path / "home")
    with Catalog.open(home) as catalog:
        index_paths(catalog, PlantedEncoder(), [lib])
        catalog.set_tags("zeroshot", {f.id: [("thunderclap", 0.9)] for f in catalog.files()})
    raw = {f: f.read_bytes() for f in files}

    assert main(["write-tags", "--library", "--dry-run", "--home", home]) == 0
    assert "KEYWORDS     thunderclap" in capsys.readouterr().out
    assert {f: f.read_bytes() for f in files} == raw

    files[1].chmod(0o444)
    assert main(["write-tags", "--library", "--home", home]) == 1  # one file could not be written: say so
    out = capsys.readouterr().out
    assert "wrote tags into 2 file(s)" in out
    assert f"not written: {files[1]}: the file is read-only" in out
    assert files[1].read_bytes() == raw[files[1]]
    assert read_file_tags(files[0]).keywords == ("thunderclap",)

    assert main(["write-tags", str(tmp_path / "elsewhere.wav"), "--home", home]) == 2
    assert "not in the catalog" in capsys.readouterr().err

    write(files[2], tone(5, 1.0), "OGG")  # new sound, not indexed yet: writing would vouch for it
    changed = files[2].read_bytes()
    assert main(["write-tags", str(files[2]), "--home", home]) == 1
    assert "it changed since it was indexed: index it again first" in capsys.readouterr().out
    assert files[2].read_bytes() == changed


def test_tagger_apply_can_write_the_tags_into_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    for label, band in (("hiss", 7), ("chime", 4)):
        for i in range(4):
            write(lib / label / f"{label}_{i}.wav", tone(band, 1.0 + 0.1 * i))
    home = str(tmp_path / "home")
    with Catalog.open(home) as catalog:
        index_paths(catalog, PlantedEncoder(), [lib])
    train = [
        "tagger",
        "train",
        "--from-folders",
        str(lib),
        "--out",
        "bands",
        "--epochs",
        "5",
        "--weight-decay",
        "0",
        "--home",
        home,
    ]
    assert main(train) == 0
    capsys.readouterr()

    assert main(["tagger", "apply", "bands", "--library", "--write-tags", "--home", home]) == 0
    assert "wrote tags into 8 file(s)" in capsys.readouterr().out
    assert read_file_tags(lib / "hiss" / "hiss_0.wav").keywords == ("hiss",)
    with Catalog.open(home) as catalog:
        assert index_paths(catalog, PlantedEncoder(), [lib]).unchanged == 8
