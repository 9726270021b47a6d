"""Weak captions from a library's own metadata: what `train-encoder --captions-from-metadata` trains on.

A sound library names its files for people: `DOOR_WoodCreakSlow_ME_01.wav`, `Foley/Doors/slam 3.wav`,
`LrgExpl.ogg`, a BWF description "Heavy wooden door slams shut", an ID3 title. Turned into captions:
- names and folders split into words (camelCase, separators), numbering and take/version noise removed
  (`crash3`, `_01`, `tk2`, `v3`, `alt`, `final`), library words that say nothing about the sound
  dropped (`sounds`, `sfx`, `data`), common abbreviations spelled out (`Lrg Expl` → "large explosion"),
  a UCS name's FXName used with its category's name (`DOOR` → "door");
- the file's embedded title and comment (ID3/Vorbis, WAV INFO, BWF description, iXML note): their
  first sentence, as written.
Every file gets up to three candidates (name; name with its folders; embedded text); a file with none
(a numbered `sound030.wav`, nothing embedded) is left out. Files whose names differ only by numbering
in the same folder form a *family* (`hammering_00`, `hammering_01`): takes of one sound, which the
training loss treats as positives of each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from indexer.metadata import EmbeddedText, parse_ucs, words

# Words of a path that describe the library, not the sound.
_NOISE = frozenset(
    [
        "sound",
        "sounds",
        "snd",
        "sfx",
        "fx",
        "audio",
        "effect",
        "effects",
        "data",
        "resources",
        "default",
        "base",
        "usr",
        "share",
        "games",
        "src",
        "wav",
        "ogg",
        "flac",
        "mp3",
        "aif",
        "aiff",
        "misc",
        "other",
        "extra",
        "lib",
        "library",
        "mono",
        "stereo",
        "st",
        "ms",
        "mix",
        "edit",
        "copy",
        "new",
        "master",
        "final",
        "alt",
        "take",
        "tk",
        "ver",
        "version",
        "var",
        "wz",
        "cat",
    ]
)
_TAKE = re.compile(r"^(v|tk|take|ver|version|var|alt|t)\d+$")
_ABBREVIATIONS = {
    "sml": "small",
    "lrg": "large",
    "med": "medium",
    "expl": "explosion",
    "explo": "explosion",
    "mg": "machine gun",
    "amb": "ambience",
    "wpn": "weapon",
    "veh": "vehicle",
    "ftsp": "footsteps",
    "h2o": "water",
    "lsr": "laser",
    "btn": "button",
    "dist": "distant",
    "bg": "background",
    "vox": "voice",
    "trafic": "traffic",
    "croud": "crowd",
    "brk": "break",
    "metbrk": "metal break",
    "woodbrk": "wood break",
    "inh2o": "in water",
}
# UCS category ids (the first four letters of a CatID) → the category's name.
_UCS_CATEGORIES = {
    "AIR": "air",
    "ALRM": "alarm",
    "AMB": "ambience",
    "ANML": "animal",
    "BELL": "bell",
    "BIRD": "bird",
    "BOAT": "boat",
    "BULT": "bullet",
    "CERM": "ceramic",
    "CHEM": "chemical",
    "CLOK": "clock",
    "CLOTH": "cloth",
    "COMM": "communication",
    "COMP": "computer",
    "CRWD": "crowd",
    "DEST": "destruction",
    "DIRT": "dirt",
    "DOOR": "door",
    "DRWR": "drawer",
    "ELEC": "electricity",
    "EXPL": "explosion",
    "FARM": "farm",
    "FIRE": "fire",
    "FIRW": "fireworks",
    "FOLY": "foley",
    "FOOD": "food",
    "FEET": "footsteps",
    "FOOT": "footsteps",
    "GEAR": "gear",
    "GLAS": "glass",
    "GUNS": "gun",
    "HORN": "horn",
    "HUMN": "human",
    "ICE": "ice",
    "LASR": "laser",
    "LIQD": "liquid",
    "MACH": "machine",
    "MAGC": "magic",
    "MECH": "mechanical",
    "METL": "metal",
    "MOTR": "motor",
    "MOVE": "movement",
    "NATR": "nature",
    "OBJ": "object",
    "PAPR": "paper",
    "PLAS": "plastic",
    "RAIN": "rain",
    "ROCK": "rock",
    "ROPE": "rope",
    "RUBR": "rubber",
    "SCFI": "science fiction",
    "SNOW": "snow",
    "SPRT": "sports",
    "SWSH": "swoosh",
    "TOOL": "tool",
    "TOYS": "toy",
    "TRAN": "train",
    "UI": "user interface",
    "VEH": "vehicle",
    "VOX": "voice",
    "WATR": "water",
    "WEAP": "weapon",
    "WEAT": "weather",
    "WHSH": "whoosh",
    "WIND": "wind",
    "WING": "wings",
    "WOOD": "wood",
}
_TRAILING_DIGITS = re.compile(r"(?<=[a-z])\d+$")
_SENTENCE_END = re.compile(r"(?<=[a-z)])\.\s")


@dataclass(frozen=True)
class WeakCaptions:
    captions: tuple[str, ...]
    keyword: str | None  # the name's caption: shared by files named alike across folders and packages
    family: str  # folder + name without numbering: the takes of one sound


def clean_words(text: str) -> list[str]:
    """Words of a name with numbering, take/version noise and library words removed, abbreviations spelled out."""
    out: list[str] = []
    for word in words(text):
        word = _TRAILING_DIGITS.sub("", word)
        if word.isdigit() or len(word) < 2 or word in _NOISE or _TAKE.match(word):
            continue
        out.extend(_ABBREVIATIONS.get(word, word).split())
    return list(dict.fromkeys(out))


def _first_sentence(text: str | None) -> str | None:
    if not text:
        return None
    sentence = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].strip(" .\"'")
    return sentence if re.search(r"[A-Za-z]{2}", sentence) else None


def weak_captions(path: Path, root: Path, embedded: EmbeddedText) -> WeakCaptions:
    ucs = parse_ucs(path.stem)
    if ucs is not None:
        category = _UCS_CATEGORIES.get(ucs.cat_id[:4].upper()) or _UCS_CATEGORIES.get(ucs.cat_id[:3].upper())
        name = [*clean_words(ucs.fx_name), *([category] if category else [])]
    else:
        name = clean_words(path.stem)
    folders = path.parent.relative_to(root).parts if path.is_relative_to(root) else ()
    all_folder_words = [w for part in folders for w in clean_words(part)]
    folder_words = [w for w in all_folder_words if w not in name]
    described = [s for s in map(_first_sentence, (embedded.comment, embedded.title)) if s]
    candidates: list[str] = []
    if name:
        candidates.append(" ".join(name))
        if folder_words:
            candidates.append(f"{' '.join(name)}, {' '.join(dict.fromkeys(folder_words))}")
    for sentence in described:
        if sentence.lower() not in (c.lower() for c in candidates):
            candidates.append(sentence)
    stem = _TRAILING_DIGITS.sub("", re.sub(r"[\s_\-.]*\d+$", "", path.stem.lower()))
    family = "/".join([*folders, stem])
    if described and set(name) <= set(all_folder_words):
        # `opensfx/opensfx_12.wav` described as "Cow": the name is only the folder and a number, the
        # description says what the sound is (and which takes belong together).
        return WeakCaptions(tuple(described[:1]), None, "/".join([*folders, described[0].lower()]))
    return WeakCaptions(tuple(candidates[:3]), " ".join(name) if name else None, family)
