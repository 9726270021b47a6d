"""The built wheel works outside the checkout: installed from the lock into a fresh environment, it indexes and
searches a generated library with the shipped `mini` weights and captions with the shipped captioner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{argv}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_the_wheel_indexes_and_searches_outside_the_checkout(tmp_path: Path) -> None:
    if not UV.exists():
        pytest.skip("uv is not installed beside this Python (make test installs it)")
    _run(UV, "build", "--wheel", "--out-dir", tmp_path / "dist", REPO, cwd=REPO)
    (wheel,) = (tmp_path / "dist").glob("soundsearch-*.whl")
    pins = tmp_path / "pins.txt"
    pins.write_text(_run(UV, "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project", cwd=REPO))
    venv = tmp_path / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv, cwd=tmp_path)
    _run(UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", "-c", pins, wheel, cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    # PYTHONDONTWRITEBYTECODE too (the CI machine sets it): a user's install caches bytecode as it runs, so only
    # the first command compiles torch and transformers, not each of the five.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SOUNDSEARCH_HOME": str(work / "home")}
    cli = venv / "bin" / "soundsearch"
    assert "index" in _run(cli, "--help", cwd=work, env=env)
    _run(cli, "synth", "lib", "--n", "27", "--seed", "4242", "--max-duration", "3", "--no-progress", cwd=work, env=env)
    summary = json.loads(_run(cli, "index", "lib", "--json", cwd=work, env=env))
    assert summary["added"] == 27 and summary["failed"] == 0
    hits = json.loads(_run(cli, "search", "a dog barking", "--mode", "vector", "-k", "3", "--json", cwd=work, env=env))
    assert len(hits) == 3
    (first,) = sorted((work / "lib").rglob("*.wav"))[:1]
    caption = _run(cli, "caption", first, cwd=work, env=env)
    assert caption.strip()
    # Nothing came from the checkout: the installed package is the one that ran.
    where = _run(venv / "bin" / "python", "-c", "import indexer; print(indexer.__file__)", cwd=work, env=env)
    assert str(REPO) not in where
