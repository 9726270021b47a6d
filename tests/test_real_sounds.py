"""The real-recordings data builder: numbered Colobot sounds become captioned training pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from training.colobot_sounds import COLOBOT_SOUNDS
from training.data import load_pairs
from training.real_sounds import PACKAGES, _short, _unpack_archives, sounds


def test_numbered_colobot_sounds_get_the_games_own_descriptions(tmp_path: Path) -> None:
    unpacked = tmp_path / "colobot-common-sounds"
    folder = unpacked / "usr/share/games/colobot/sounds"
    folder.mkdir(parents=True)
    tone = (0.3 * np.sin(np.arange(8_000) / 8)).astype(np.float32)
    for name in ("sound005.wav", "sound076.wav", "sound999.wav", "readme.wav"):
        sf.write(folder / name, tone, 22_050)
    (colobot,) = [p for p in PACKAGES if p.name == "colobot-common-sounds"]

    _unpack_archives(unpacked)
    kept = sorted(sounds(colobot, unpacked))

    # Only the described copies: a number the game's table lacks, or another name, stays out.
    assert [_short(p.relative_to(unpacked)).as_posix() for p in kept] == [
        "colobot/sound005.wav",
        "colobot/sound076.wav",
    ]
    data, rate = sf.read(kept[0], dtype="float32")
    np.testing.assert_allclose(data, tone, atol=1e-4)
    assert rate == 22_050
    library = tmp_path / "library"
    for p in kept:
        (library / p.name).parent.mkdir(parents=True, exist_ok=True)
        (library / p.name).symlink_to(p)
    captions = {p.path.name: p.captions for p in load_pairs(str(library), captions_from_metadata=True)}
    assert captions == {"sound005.wav": (COLOBOT_SOUNDS[5],), "sound076.wav": ("thunder",)}
