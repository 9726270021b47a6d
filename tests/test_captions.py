"""Weak captions from a library's own metadata (`train-encoder --captions-from-metadata`)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.metadata import EmbeddedText, read_embedded_text
from training.captions import clean_words, weak_captions
from training.data import load_pairs

SR = 16_000


def _tone(path: Path, seconds: float = 0.5, **tags: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1) as f:
        for key, value in tags.items():
            setattr(f, key, value)
        f.write((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    return path


def _add_chunk(path: Path, chunk_id: bytes, payload: bytes) -> None:
    """Append a RIFF chunk to a WAV file and fix the RIFF size."""
    data = bytearray(path.read_bytes())
    data += chunk_id + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def test_names_become_words_without_numbering_takes_or_library_noise() -> None:
    assert clean_words("LrgExpl") == ["large", "explosion"]
    assert clean_words("crash3") == ["crash"]
    assert clean_words("hammering_02_tk3_v2_final") == ["hammering"]
    assert clean_words("sounds/sfx") == []


def test_ucs_names_folders_and_families(tmp_path: Path) -> None:
    door = tmp_path / "Foley" / "Doors" / "DOOR_WoodCreakSlow_ME_01.wav"
    weak = weak_captions(door, tmp_path, EmbeddedText())
    assert weak.captions == ("wood creak slow door", "wood creak slow door, foley doors")
    takes = [weak_captions(tmp_path / "Tools" / f"hammering_{i:02d}.wav", tmp_path, EmbeddedText()) for i in (0, 1)]
    other = weak_captions(tmp_path / "Other" / "hammering_00.wav", tmp_path, EmbeddedText())
    assert takes[0].family == takes[1].family != other.family  # takes of one sound, not its namesake
    assert takes[0].keyword == other.keyword == "hammering"  # named alike: one keyword


def test_numbered_names_use_the_embedded_description_or_are_left_out(tmp_path: Path) -> None:
    described = weak_captions(
        tmp_path / "opensfx" / "opensfx_12.wav", tmp_path, EmbeddedText(comment="Cow mooing. Recorded by X.")
    )
    assert described.captions == ("Cow mooing",)
    # Named like its folder, no description: the name is still the best caption there is.
    assert weak_captions(tmp_path / "hammering" / "hammering_00.wav", tmp_path, EmbeddedText()).captions == (
        "hammering",
    )
    assert weak_captions(tmp_path / "sounds" / "sound030.wav", tmp_path, EmbeddedText()).captions == ()


def test_ixml_note_is_read_as_the_comment(tmp_path: Path) -> None:
    wav = _tone(tmp_path / "take.wav")
    _add_chunk(wav, b"iXML", b"<?xml version='1.0'?><BWFXML><NOTE>glass bottle smash, close</NOTE></BWFXML>\x00")
    assert read_embedded_text(wav).comment == "glass bottle smash, close"
    _add_chunk(_tone(tmp_path / "broken.wav"), b"iXML", b"<BWFXML><NOTE>unclosed")
    assert read_embedded_text(tmp_path / "broken.wav").comment is None


def test_load_pairs_from_metadata(tmp_path: Path) -> None:
    _tone(tmp_path / "Foley" / "Doors" / "DOOR_WoodCreakSlow_ME_01.wav")
    _tone(tmp_path / "sfx" / "sound030.wav")  # no informative name: left out
    _tone(tmp_path / "fx" / "fx_07.ogg", title="Thunder rolling in the distance")
    (tmp_path / "fx" / "broken.wav").write_bytes(b"RIFF not audio")  # unreadable: skipped, not fatal
    pairs = {p.path.name: p for p in load_pairs(str(tmp_path), captions_from_metadata=True)}
    assert set(pairs) == {"DOOR_WoodCreakSlow_ME_01.wav", "fx_07.ogg"}
    assert pairs["fx_07.ogg"].captions == ("Thunder rolling in the distance",)
    assert pairs["DOOR_WoodCreakSlow_ME_01.wav"].keywords == ("wood creak slow door",)
