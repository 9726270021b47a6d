"""The one way soundsearch replaces a file: write beside it, make it durable, rename over it.

A reader (another process, a crash, a full disk half-way) sees the old file or the new one, never a torn one:
the temporary file lives in the target's directory (a rename is atomic only within one filesystem), it is fsynced
before the rename and the directory after it (so the rename itself survives a power cut), and any failure removes
the temporary file and leaves the old one untouched.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` for the caller to write; on a clean exit it replaces `path`.

    An existing target's permission bits are carried over, so rewriting a user's file does not change who may
    read it; a new file gets what `open(path, "w")` would give it (0o666 less the umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(target, lambda name: os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))
    try:
        yield tmp
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh empty folder beside `path` for the caller to fill; on a clean exit it becomes `path`.

    For a folder published once (an unpacked archive): readers see all of it or none, and a failure leaves
    no half-filled folder under the final name. An existing non-empty `path` is not replaced (OSError). Its
    files are not fsynced one by one: such a folder can be made again.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(target, lambda name: os.mkdir(name, 0o777))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _beside(target: Path, create: Callable[[Path], None]) -> Path:
    """A new hidden name in the target's folder (a rename is atomic only within one filesystem), created
    exclusively by `create`, so two writers of one target never share a temporary."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            create(tmp)
            return tmp
        except FileExistsError:
            continue


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms (Windows) cannot open a directory; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
