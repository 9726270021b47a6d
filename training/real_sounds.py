"""Real recorded sound effects from Debian game-data packages: the training and test data of `mini@3`..`mini@5`.

Reproducible in one command (`python -m training.real_sounds --out /work/data/real`): each package is
fetched with `apt-get download`, unpacked with `dpkg-deb -x`, its `copyright` file's licenses recorded,
and its sound effects (music, anthems, videos and most recorded speech left out) linked into
`OUT/library/<split>/<package>/...`, so that a split is an ordinary folder `soundsearch index` can read.
Sounds packed in archives are unpacked: Warzone 2100's `.wz` zips, OpenTTD's `opensfx.cat` (whose
per-sound descriptions become the WAVs' embedded comments, the "BWF description" of this data). Colobot's
numbered `soundNNN.wav` files are copied with the game's own description of each number as their comment
(`training.colobot_sounds`).

The split is by package: a test package is never seen in training, which is how a user's own library
relates to the shipped model. `OUT/manifest.csv` lists every file with its package, split and licenses.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from indexer.formats import is_supported
from storage.atomic import atomic_directory
from training.colobot_sounds import COLOBOT_SOUNDS


@dataclass(frozen=True)
class Package:
    name: str
    split: str  # train | dev | test
    keep: str = ""  # regex a sound's path inside the package must match ("" keeps all)
    drop: str = r"/(music|stdmusic|anthem|video)/"


PACKAGES: tuple[Package, ...] = (
    # Training: weapons, vehicles, explosions, machines, creatures, interface sounds, one voice pack.
    Package("hedgewars-data", "train", drop=r"/(Music|voices/(?!Default/))"),
    Package("warzone2100-data", "train", keep=r"audio/(sfx|multi|nexus|radclick)/"),
    Package("openttd-opensfx", "train"),
    Package("freecol", "train"),
    # Numbered names only: the described copies written under `_unpacked/` (training.colobot_sounds) are kept.
    Package("colobot-common-sounds", "train", keep=r"^/_unpacked/"),
    Package("neverball-data", "train"),  # ships no sound files (they live in another package)
    # Development (model selection): karts, engines, crashes, animals, weather.
    Package("supertuxkart-data", "dev", drop=r"/music/|_theme|Remix|Battle_Theme|rabbit_hole"),
    # Test: never trained on. Workshops and crafts, a city's buildings and traffic, battle sounds.
    Package("widelands-data", "test"),
    Package("lincity-ng-data", "test"),
    Package("freeciv-data", "test"),
)

_COLOBOT_SOUND = re.compile(r"^sound(\d{3})\.wav$")
_LICENSE = re.compile(r"^License:\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r'"([^"]+)"')


def fetch(pkg: Package, debs: Path, root: Path) -> Path:
    """The unpacked package (downloaded and extracted unless already there)."""
    target = root / pkg.name
    if target.is_dir():
        return target
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{pkg.name}_*.deb")):
        subprocess.run(["apt-get", "download", pkg.name], cwd=debs, check=True)
    (deb,) = debs.glob(f"{pkg.name}_*.deb")
    with atomic_directory(target) as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    return target


def licenses(unpacked: Path, name: str) -> list[str]:
    copyright_file = unpacked / "usr/share/doc" / name / "copyright"
    if not copyright_file.is_file():
        raise SystemExit(f"{name}: no copyright file, not used")
    return sorted(set(_LICENSE.findall(copyright_file.read_text(errors="replace"))))


def _unpack_archives(unpacked: Path) -> None:
    """Sounds inside `.wz` zips and OpenTTD `.cat` files, and Colobot's described copies, written next to
    them under `_unpacked/`."""
    out = unpacked / "_unpacked"
    if out.is_dir():
        return
    with atomic_directory(out) as tmp:
        for archive in unpacked.rglob("*.wz"):
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    if is_supported(member):
                        dest = tmp / archive.stem / member
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(z.read(member))
        for cat in unpacked.rglob("*.cat"):
            for i, (description, wav) in enumerate(_cat_entries(cat.read_bytes())):
                _write_described(io.BytesIO(wav), description, tmp / cat.stem / f"{cat.stem}_{i:02d}.wav")
        for numbered in unpacked.rglob("sound*.wav"):
            number = _COLOBOT_SOUND.match(numbered.name)
            if number and (told := COLOBOT_SOUNDS.get(int(number.group(1)))):
                _write_described(numbered, told, tmp / "colobot" / numbered.name)


def _write_described(source: io.BytesIO | Path, description: str, dest: Path) -> None:
    """The sound as a WAV whose INFO comment (what --captions-from-metadata reads) is `description`."""
    audio, rate = sf.read(source, dtype="float32")
    if not len(audio):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(dest), "w", samplerate=rate, channels=1 if audio.ndim == 1 else audio.shape[1]) as f:
        f.comment = description
        f.write(audio)


def _cat_entries(data: bytes) -> Iterator[tuple[str, bytes]]:
    """OpenTTD sound catalogue: (offset, size) pairs, then per sound [name length][name][RIFF ...]."""
    first = struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF
    for n in range(first // 8):
        offset = struct.unpack_from("<I", data, 8 * n)[0] & 0x7FFFFFFF
        name_len = data[offset]
        name = data[offset + 1 : offset + 1 + name_len].decode("latin-1").strip("\x00 ")
        riff = offset + 1 + name_len
        if data[riff : riff + 4] != b"RIFF":
            continue
        size = struct.unpack_from("<I", data, riff + 4)[0] + 8
        quoted = _QUOTED.search(name)
        yield (quoted.group(1) if quoted else name), data[riff : riff + size]


def sounds(pkg: Package, unpacked: Path) -> Iterator[Path]:
    _unpack_archives(unpacked)
    for path in sorted(unpacked.rglob("*")):
        rel = "/" + path.relative_to(unpacked).as_posix()
        if not path.is_file() or not is_supported(path.name):
            continue
        if pkg.keep and not re.search(pkg.keep, rel):
            continue
        if pkg.drop and re.search(pkg.drop, rel):
            continue
        yield path


def _short(rel: Path) -> Path:
    """`usr/share/games/widelands/data/sound/x.ogg` → `widelands/data/sound/x.ogg`."""
    parts = rel.parts
    for prefix in (("usr", "share", "games"), ("usr", "share"), ("_unpacked",)):
        if parts[: len(prefix)] == prefix:
            return Path(*parts[len(prefix) :])
    return rel


def build(out: Path, packages: tuple[Package, ...] = PACKAGES) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for pkg in packages:
        unpacked = fetch(pkg, out / "debs", out / "pkgs")
        pkg_licenses = "; ".join(licenses(unpacked, pkg.name))
        n = 0
        for path in sounds(pkg, unpacked):
            link = out / "library" / pkg.split / pkg.name / _short(path.relative_to(unpacked))
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(path)
            rows.append({"package": pkg.name, "split": pkg.split, "licenses": pkg_licenses, "path": str(link)})
            n += 1
        print(f"{pkg.name:24s} {pkg.split:5s} {n:4d} sounds  ({pkg_licenses})", file=sys.stderr)
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["package", "split", "licenses", "path"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/data/real"))
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
