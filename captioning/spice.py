"""SPICE (Anderson et al. 2016) through the reference Java implementation, where its jars are present.

SPICE 1.0 (`spice-1.0.jar`, shipped inside `pycocoevalcap`) parses captions with Stanford CoreNLP 3.6.0,
whose two jars (`stanford-corenlp-3.6.0.jar`, `stanford-corenlp-3.6.0-models.jar`, ~390 MB zipped) are
not on PyPI and cannot be fetched on offline machines. They are looked up, in order, in:

1. the folder passed as `spice_dir` (CLI: `--spice-dir`),
2. `$SOUNDSEARCH_SPICE_DIR`,
3. the per-user data folder (`soundsearch captioner get-spice` downloads them there, once),
4. `pycocoevalcap/spice/lib` (where pycocoevalcap's own downloader puts them).

Where they are missing, `locate_spice` says why and no SPICE (hence no SPIDEr) is reported: no other number
is ever put under SPICE's name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from captioning.errors import MetricsError
from indexer.settings import Settings, settings

CORENLP_VERSION = "3.6.0"
CORENLP_JARS = (f"stanford-corenlp-{CORENLP_VERSION}.jar", f"stanford-corenlp-{CORENLP_VERSION}-models.jar")
CORENLP_URL = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"
SPICE_ENV = Settings.env_name("spice_dir")
SPICE_MAIN = "edu.anu.spice.SpiceScorer"


@dataclass(frozen=True)
class SpiceLocation:
    """Everything `java` needs to run SPICE: the SPICE jar, its bundled libraries and CoreNLP."""

    spice_jar: Path
    classpath: tuple[Path, ...]


def default_spice_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("soundsearch") / "spice"


def _pycocoevalcap_spice() -> Path | None:
    import importlib.util

    # pycocoevalcap is a namespace package (no __init__.py): find a module inside it.
    try:
        spec = importlib.util.find_spec("pycocoevalcap.spice.spice")
    except ModuleNotFoundError:
        return None
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def locate_spice(spice_dir: str | Path | None = None) -> SpiceLocation | str:
    """The SPICE installation to use, or the reason there is none (a sentence for reports)."""
    if shutil.which("java") is None:
        return "Java is not installed (SPICE is a Java program)"
    bundled = _pycocoevalcap_spice()
    if bundled is None or not (bundled / "spice-1.0.jar").is_file():
        return "pycocoevalcap (which ships spice-1.0.jar) is not installed"
    candidates = [Path(p) for p in (spice_dir, settings().spice_dir) if p]
    candidates += [default_spice_dir(), bundled / "lib"]
    for folder in candidates:
        if all((folder / jar).is_file() for jar in CORENLP_JARS):
            libs = sorted((bundled / "lib").glob("*.jar"))
            return SpiceLocation(
                bundled / "spice-1.0.jar", (bundled / "spice-1.0.jar", *libs, *(folder / j for j in CORENLP_JARS))
            )
    looked = ", ".join(str(c) for c in candidates)
    return (
        f"Stanford CoreNLP {CORENLP_VERSION} jars ({', '.join(CORENLP_JARS)}) not found (looked in: {looked}); "
        f"run `soundsearch captioner get-spice` once on a machine with a network, or set ${SPICE_ENV}"
    )


def run_spice(
    location: SpiceLocation, candidates: Sequence[str], references: Sequence[Sequence[str]], *, memory: str = "8G"
) -> tuple[float, list[float]]:
    """Corpus SPICE (mean of per-caption F-scores, as pycocoevalcap reports it) and the per-caption scores."""
    with tempfile.TemporaryDirectory(prefix="soundsearch-spice-") as tmp:
        in_file, out_file = Path(tmp) / "in.json", Path(tmp) / "out.json"
        rows = [
            {"image_id": i, "test": c, "refs": list(r)}
            for i, (c, r) in enumerate(zip(candidates, references, strict=True))
        ]
        in_file.write_text(json.dumps(rows))
        cmd = ["java", f"-Xmx{memory}", "-cp", os.pathsep.join(map(str, location.classpath)), SPICE_MAIN]
        cmd += [str(in_file), "-out", str(out_file), "-subset", "-silent"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out_file.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise MetricsError(f"SPICE failed (exit {done.returncode}): {' | '.join(tail)}")
        results = json.loads(out_file.read_text())
    by_id = {int(r["image_id"]): float(r["scores"]["All"]["f"]) for r in results}
    scores = [by_id[i] for i in range(len(candidates))]
    return (sum(scores) / len(scores) if scores else 0.0), scores


def download_corenlp(dest: Path | None = None, *, url: str = CORENLP_URL) -> Path:
    """One-time download of the two CoreNLP 3.6.0 jars SPICE needs (network required); returns the folder."""
    folder = dest or default_spice_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if all((folder / jar).is_file() for jar in CORENLP_JARS):
        return folder
    with tempfile.TemporaryDirectory(prefix="soundsearch-corenlp-") as tmp:
        archive = Path(tmp) / "corenlp.zip"
        try:
            urllib.request.urlretrieve(url, archive)
        except OSError as exc:
            raise MetricsError(f"cannot download {url}: {exc}") from None
        with zipfile.ZipFile(archive) as zf:
            for jar in CORENLP_JARS:
                member = next((n for n in zf.namelist() if n.endswith("/" + jar) or n == jar), None)
                if member is None:
                    raise MetricsError(f"{url} does not contain {jar}")
                partial = folder / (jar + ".part")
                with zf.open(member) as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                partial.replace(folder / jar)  # a half-written jar is never taken for a whole one
    return folder
