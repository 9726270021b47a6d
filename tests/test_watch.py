"""Watch folders: a real watcher (inotify through watchdog) on a real library, its catalog read from another
handle as another process would; every wait is bounded."""

from __future__ import annotations

import _thread
import contextlib
import io
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import soundfile as sf

from indexer.pipeline import IndexOptions
from search.indexing import IndexingResult, RunProgress
from search.watching import LibraryWatcher, WatchOptions, WatchReport
from storage.catalog import Catalog, CatalogError, FileRecord
from tests.planted import SR, PlantedEncoder, tone, write

WAIT_S = 20.0  # the longest a test waits for the catalog to follow (the CPUs may be shared)


@dataclass
class Recorded(WatchReport):
    results: list[IndexingResult] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)

    def indexed(self, result: IndexingResult) -> None:
        self.results.append(result)

    def failed(self, error: Exception) -> None:
        self.errors.append(error)


class Runs(RunProgress):
    """Every run, changes or not (a report hears only runs that changed something)."""

    def __init__(self) -> None:
        self.count = 0

    def stage(self, name: str) -> None:
        self.count += name == "indexing"


@dataclass
class Watched:
    library: Path
    home: Path
    report: Recorded
    runs: Runs
    reader: Catalog  # a handle of its own, as another process would have

    def files(self) -> dict[str, FileRecord]:
        return {f.path.name: f for f in self.reader.files()}

    def segments(self, file_id: int) -> list[int]:
        return [s.id for s in self.reader.segments(file_id)]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


@pytest.fixture()
def watched(tmp_path: Path) -> Iterator[Watched]:
    library = tmp_path / "lib"
    write(library / "birds" / "first.wav", tone(5, 1.0))
    home = tmp_path / "home"
    report, runs = Recorded(), Runs()
    catalog = Catalog.open(home)
    # Settle: well above the slow writer's pauses (0.1 s), even when the test's CPUs are busy.
    options = WatchOptions(settle_s=1.0, max_delay_s=10.0, retry_s=0.5, index=IndexOptions(workers=0))
    watcher = LibraryWatcher(catalog, PlantedEncoder(), [library], options=options, report=report, progress=runs)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), name="watcher")
    thread.start()
    reader = Catalog.open(home, writable=False)
    try:
        yield Watched(library, home, report, runs, reader)
    finally:
        stop.set()
        thread.join(WAIT_S)
        reader.close()
        catalog.close()
    assert not thread.is_alive(), "the watcher did not stop"


def test_the_catalog_follows_new_renamed_deleted_and_corrupt_files(watched: Watched) -> None:
    lib = watched.library
    wait_for(lambda: "first.wav" in watched.files(), "the files present at start are indexed")

    write(lib / "birds" / "second.wav", tone(6, 2.0))
    wait_for(lambda: "second.wav" in watched.files(), "a new file is indexed")
    second = watched.files()["second.wav"]
    assert second.status == "ok" and second.duration_s == pytest.approx(2.0)
    vectors = watched.segments(second.id)
    assert vectors

    os.rename(lib / "birds" / "second.wav", lib / "birds" / "renamed.wav")
    wait_for(lambda: "renamed.wav" in watched.files() and "second.wav" not in watched.files(), "a rename")
    renamed = watched.files()["renamed.wav"]
    assert renamed.id == second.id and watched.segments(renamed.id) == vectors  # moved: vectors kept
    wait_for(lambda: any(r.summary.moved == 1 for r in watched.report.results), "the run reports a move")

    (lib / "birds" / "first.wav").unlink()
    wait_for(lambda: "first.wav" not in watched.files(), "a deleted file leaves the catalog")

    (lib / "birds" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    wait_for(lambda: "broken.wav" in watched.files(), "a corrupt file is recorded")
    broken = watched.files()["broken.wav"]
    assert broken.status == "failed" and broken.error
    write(lib / "birds" / "after.wav", tone(3, 1.0))  # the watcher goes on
    wait_for(lambda: "after.wav" in watched.files(), "a file after a corrupt one is indexed")
    assert watched.files()["after.wav"].status == "ok" and watched.report.errors == []


def test_a_file_still_being_written_is_indexed_once_it_stops_changing(watched: Watched) -> None:
    wait_for(lambda: bool(watched.report.results), "the first run")
    runs_before = len(watched.report.results)
    buf = io.BytesIO()
    sf.write(buf, tone(4, 3.0), SR, format="WAV")
    data = buf.getvalue()
    target = watched.library / "birds" / "recording.wav"
    with open(target, "wb") as f:  # a recorder: pieces well inside the settle time, each on disk at once
        for start in range(0, len(data), len(data) // 6):
            f.write(data[start : start + len(data) // 6])
            f.flush()
            time.sleep(0.1)
    wait_for(lambda: "recording.wav" in watched.files(), "the finished recording is indexed")
    record = watched.files()["recording.wav"]
    assert record.status == "ok" and record.duration_s == pytest.approx(3.0)
    wait_for(lambda: len(watched.report.results) > runs_before, "the run is reported")
    time.sleep(2.0)  # a second run, were there one, would have run by now
    runs = watched.report.results[runs_before:]
    assert [(r.summary.added, r.summary.failed) for r in runs] == [(1, 0)]
    assert watched.runs.count == 2  # the first, and this one: reading files for a run starts no other


def test_a_refused_run_is_reported_and_tried_again(watched: Watched) -> None:
    wait_for(lambda: bool(watched.report.results), "the first run")
    with Catalog.open(watched.home) as other, other.run_lock():  # another indexing run holds the catalog
        write(watched.library / "birds" / "meanwhile.wav", tone(2, 1.0))
        wait_for(lambda: bool(watched.report.errors), "the refusal is reported")
    assert isinstance(watched.report.errors[0], CatalogError)
    wait_for(lambda: "meanwhile.wav" in watched.files(), "the change is indexed once the catalog is free")


def test_unwatchable_folders_are_refused(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "home") as catalog:
        for root, message in ((tmp_path / "missing", "no such folder"), ("s3://bucket/sfx", "cannot be watched")):
            with pytest.raises(CatalogError, match=message):
                LibraryWatcher(catalog, PlantedEncoder(), [root])


def test_the_watch_command_prints_its_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """`soundsearch watch` in this process; a second thread plays the user: adds a file, reads the
    output, presses Ctrl-C (a KeyboardInterrupt in the main thread, as SIGINT raises)."""
    from api.cli import main

    library = tmp_path / "lib"
    library.mkdir()
    out = io.StringIO()
    problems: list[BaseException] = []

    def user() -> None:
        try:
            # A cold start imports torch and loads the model: slow on busy shared CPUs.
            wait_for(lambda: "watching" in out.getvalue(), "the command starts watching", timeout_s=180)
            sf.write(library / "take.wav", tone(6, 1.0), SR)
            wait_for(lambda: "1 added" in out.getvalue(), "the command reports the new file")
        except BaseException as exc:
            problems.append(exc)
        finally:
            _thread.interrupt_main()

    argv = ["watch", str(library), "--home", str(tmp_path / "home"), "--model", "tiny-random", "--settle", "0.3"]
    thread = threading.Thread(target=user)
    # Whatever earlier tests left as this process's SIGINT handler, the watch ends on Ctrl-C.
    before = signal.signal(signal.SIGINT, lambda *_: None)
    thread.start()
    try:
        with contextlib.redirect_stdout(out):
            code = main([*argv, "--workers", "0"])
    finally:
        signal.signal(signal.SIGINT, before)
    thread.join(WAIT_S)
    assert not problems, (problems, out.getvalue())
    lines = out.getvalue().splitlines()
    assert code == 0 and "stopped watching" in lines[-1], lines
    assert re.match(r"\[\d\d:\d\d:\d\d\] watching .*lib \(Ctrl-C stops\)$", lines[0]), lines
    assert any(re.match(r"\[\d\d:\d\d:\d\d\] 1 added, 0 updated, 0 unchanged", line) for line in lines), lines
    with Catalog.open(tmp_path / "home", writable=False) as catalog:
        assert [f.path.name for f in catalog.files()] == ["take.wav"]
