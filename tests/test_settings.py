"""One settings object for the library and the server (`indexer.settings`).

- Every library setting is read from its `SOUNDSEARCH_*` variable through `settings()`, and a change to the
  environment is seen by the next call; the CLI's options win over the environment.
- A bad value stops a command with one line naming the variable.
- No module but `indexer.settings` reads `SOUNDSEARCH_*` variables; README documents every setting.
"""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from api.server import AppFactory
from captioning.spice import CORENLP_JARS, locate_spice
from indexer.encoders.mini import minilm_dir
from indexer.settings import Settings, SettingsError, configure, settings, use
from storage import index_choice
from storage.catalog import Catalog, resolve_home
from storage.vectors import torch_search

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "indexer", "search", "captioning", "training", "api", "evaluation")


def test_library_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOUNDSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOUNDSEARCH_MAX_INDEX_MEMORY", "1.5GiB")
    monkeypatch.setenv("SOUNDSEARCH_MINILM_DIR", str(tmp_path / "minilm"))
    monkeypatch.setenv("SOUNDSEARCH_FAISS_GPU", "1")
    monkeypatch.setenv("SOUNDSEARCH_THREADS", "")  # empty: unset, as before
    assert resolve_home() == tmp_path / "home"
    assert index_choice.default_memory_budget() == int(1.5 * (1 << 30))
    assert minilm_dir() == tmp_path / "minilm"
    assert settings().faiss_gpu and settings().threads is None
    monkeypatch.setenv("SOUNDSEARCH_FAISS_GPU", "0")
    assert not settings().faiss_gpu  # the next call sees the change
    assert torch_search.choose_backend("cpu") == "torch"


def test_db_url_from_the_environment_is_the_catalogs_for_every_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before, only the server read SOUNDSEARCH_DB_URL: `soundsearch index` filled SQLite in the home folder,
    # a catalog the server never saw.
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("SOUNDSEARCH_DB_URL", f"sqlite:///{elsewhere}")
    with Catalog.open(tmp_path / "home") as catalog:
        assert catalog.database_url == f"sqlite:///{elsewhere}"
    assert elsewhere.exists() and not (tmp_path / "home" / "catalog.db").exists()


def test_spice_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    located = locate_spice()
    if isinstance(located, str) and "not installed" in located:
        pytest.skip(located)
    for jar in CORENLP_JARS:
        (tmp_path / jar).write_bytes(b"")
    monkeypatch.setenv("SOUNDSEARCH_SPICE_DIR", str(tmp_path))
    located = locate_spice()
    assert not isinstance(located, str) and tmp_path / CORENLP_JARS[0] in located.classpath


def test_command_line_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOUNDSEARCH_PORT", "9000")
    monkeypatch.setenv("SOUNDSEARCH_HOME", str(tmp_path / "env"))
    configured = configure(home=tmp_path / "option")
    assert settings() is configured and configured.port == 9000
    assert resolve_home() == tmp_path / "option"  # the library reads the same object
    use(None)
    assert resolve_home() == tmp_path / "env"


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSEARCH_MAX_INDEX_MEMORY", "lots")
    with pytest.raises(SettingsError, match=r"max_index_memory \(SOUNDSEARCH_MAX_INDEX_MEMORY\): .*not a size"):
        settings()
    with pytest.raises(SettingsError, match=r"workers \(SOUNDSEARCH_WORKERS\)"):
        configure(workers=0)


def test_the_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    env = {"SOUNDSEARCH_HOME": str(tmp_path), "SOUNDSEARCH_FAISS_GPU": "perhaps", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "status"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "soundsearch: error: invalid setting: faiss_gpu (SOUNDSEARCH_FAISS_GPU): Input should be a valid boolean, "
        "unable to interpret input"
    ]


def test_server_processes_get_the_parents_settings_with_its_options(tmp_path: Path) -> None:
    # What uvicorn does to hand the app to a worker or reloader process: pickle its configuration.
    factory = pickle.loads(pickle.dumps(AppFactory(Settings(home=tmp_path, api_key="k3y", library_roots=[tmp_path]))))
    app = factory()
    assert settings().home == tmp_path  # and the library in that process reads them too
    assert app.state.settings.api_key.get_secret_value() == "k3y"
    assert app.state.settings.library_roots == [tmp_path]


def test_no_module_reads_soundsearch_variables_itself() -> None:
    readers = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "indexer" / "settings.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # Ray's own variables, set for Ray (not soundsearch settings).
    assert [r for r in readers if not r.startswith("indexer/ray_engine.py:")] == []


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Settings") :]
    documented = set(re.findall(r"^\| `(SOUNDSEARCH_\w+)`", table, re.MULTILINE))
    assert documented == {Settings.env_name(name) for name in Settings.model_fields}
