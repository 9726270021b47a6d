"""Small helpers shared by the benchmark scripts (and the tests): timing, a header describing the machine,
scratch PostgreSQL databases."""

from __future__ import annotations

import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{date.today().isoformat()}, {cores} cores ({cpu}), Python {platform.python_version()}"


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall time of `repeats` runs: the least disturbed by a noisy machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def percentile_ms(samples_s: list[float], q: float) -> float:
    return (
        statistics.quantiles([s * 1e3 for s in samples_s], n=100)[int(q) - 1]
        if len(samples_s) > 1
        else samples_s[0] * 1e3
    )


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at `server_url` (its SQLAlchemy URL), dropped afterwards."""
    import psycopg
    from sqlalchemy import make_url

    server = make_url(server_url)
    name = f"soundsearch_scratch_{uuid.uuid4().hex[:16]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
