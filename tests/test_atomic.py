"""`storage.atomic`: a file (or a folder) is replaced whole or not at all, with its permissions, no litter."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.atomic import atomic_directory, atomic_path, atomic_write_bytes, atomic_write_text


class Boom(Exception):
    pass


@pytest.fixture()
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half of the new conten")
        raise Boom
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_replaces_the_file_keeping_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_a_new_file_gets_the_permissions_open_would_give(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "new" / "folder" / "metadata.csv"  # missing folders are made
    atomic_write_text(target, "a,b\n")
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b\n")
    assert target.read_text() == "a,b\n" and mode(target) == mode(plain) == 0o644  # not mkstemp's 0o600


def test_a_folder_is_published_whole(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "unpacked"
    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "a.wav").write_bytes(b"RIFF")
        raise Boom
    assert os.listdir(tmp_path) == []  # neither the folder nor a half-filled temporary
    with atomic_directory(target) as tmp:
        (tmp / "a.wav").write_bytes(b"RIFF")
    assert os.listdir(target) == ["a.wav"] and mode(target) == 0o755 and os.listdir(tmp_path) == ["unpacked"]
    with pytest.raises(OSError), atomic_directory(target) as tmp:
        (tmp / "b.wav").write_bytes(b"RIFF")
    assert os.listdir(target) == ["a.wav"] and os.listdir(tmp_path) == ["unpacked"]
