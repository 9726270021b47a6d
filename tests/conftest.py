from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

# Tests never reach a model hub: loading code must work from local files alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# A PostgreSQL server for the catalog tests (`.ci/with-postgres` starts a throwaway one and sets it):
# the URL of a database the tests may create databases from, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres.
PG_URL_ENV = "SOUNDSEARCH_TEST_PG_URL"


def pg_server_url() -> str:
    """The test server's URL; skips the test without one, except under CI, where PostgreSQL is part of the suite."""
    url = os.environ.get(PG_URL_ENV)
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {PG_URL_ENV} is not set: run the suite under .ci/with-postgres")
    pytest.skip(f"no PostgreSQL server: set {PG_URL_ENV} (.ci/with-postgres make test starts one)")


@contextmanager
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL) on the test server, dropped afterwards."""
    from benchmarks._common import scratch_database

    with scratch_database(pg_server_url()) as url:
        yield url


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A PostgreSQL database for this test alone."""
    with pg_database() as url:
        yield url


DIALECTS = ["sqlite", "postgresql"]


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest) -> str | None:
    """The catalog database a test runs on: SQLite in the catalog's home folder (None, the default), then a
    PostgreSQL database of its own. Tests taking it run on both and must give the same results."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="module", params=DIALECTS)
def module_db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """`db_url` for a module's shared catalog: the module's tests run once per database."""
    if request.param == "sqlite":
        yield None
        return
    with pg_database() as url:
        yield url


@pytest.fixture(autouse=True)
def _environment_settings() -> Iterator[None]:
    """Every test starts and ends on the environment's settings, whatever `soundsearch serve` configured in-process."""
    from indexer.settings import use

    use(None)
    yield
    use(None)


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLAP saved in Hugging Face layout, as a user's local model would be."""
    from indexer.encoders.tiny import save_tiny_random_clap

    return save_tiny_random_clap(tmp_path_factory.mktemp("tiny_clap"))


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def tone_mix(duration_s: float, sample_rate: int, channels: int = 1, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """Band-limited test signal (sines below 4 kHz, optional noise), shape [frames, channels]."""
    gen = np.random.default_rng(seed)
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    freqs = gen.uniform(100, 3000, size=(channels, 3))
    x = sum(0.2 * np.sin(2 * np.pi * freqs[:, i : i + 1] * t) for i in range(3))
    x = x + noise * gen.standard_normal(x.shape)
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32).T)


class CliRun(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliRun:
    """`soundsearch ARGS` in this process, as its entry point runs it: a test running several commands pays
    for the interpreter, torch and the model once instead of once per command. argparse's usage errors
    leave through SystemExit; its code is the exit status, as in a shell."""
    from api.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return CliRun(code, out.out, out.err)
