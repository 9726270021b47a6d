"""Walking library roots: every audio file once, with its size and mtime, never stuck in a loop."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.formats import is_supported
from indexer.fsnames import display


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, as walked (symlinked folders keep their name in the library); see indexer.fsnames
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WalkIssue:
    path: str
    reason: str


def within(path: str | Path, roots: Sequence[str | Path]) -> bool:
    """Whether `path`, every symlink resolved, lies in one of `roots` (also resolved)."""
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def walk_audio(root: Path, *, confine_to: Sequence[Path] | None) -> tuple[list[FoundFile], list[WalkIssue]]:
    """Audio files under `root` (hidden files and folders skipped), plus what could not be walked.

    Symlinked folders are followed, but each real folder is visited once, so symlink loops end. With
    `confine_to`, a symlink (to a file or a folder) whose target lies outside those folders is skipped
    and reported: a link must not carry a library, or a server that indexes it, to files elsewhere on
    the machine. `None` follows links anywhere (the user's own training folders, often symlink farms).
    Only symlinks need checking: a plain entry lies where its folder lies.
    """
    found: list[FoundFile] = []
    issues: list[WalkIssue] = []
    visited: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            issues.append(WalkIssue(folder, f"cannot open folder: {exc.strerror}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            issues.append(WalkIssue(folder, "skipped: symlink loop or folder already walked"))
            continue
        visited.add(key)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            issues.append(WalkIssue(folder, f"cannot read folder: {exc.strerror}"))
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files, including macOS "._x.wav" resource forks that are not audio
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                if not is_dir and not (is_supported(entry.name) and entry.is_file(follow_symlinks=True)):
                    continue
                if confine_to is not None and entry.is_symlink() and not within(entry.path, confine_to):
                    target = display(os.path.realpath(entry.path))
                    issues.append(WalkIssue(entry.path, f"skipped: a symlink to {target}, outside the library roots"))
                elif is_dir:
                    subdirs.append(entry.path)
                else:
                    est = entry.stat(follow_symlinks=True)
                    found.append(FoundFile(entry.path, est.st_size, est.st_mtime_ns))
            except OSError as exc:
                issues.append(WalkIssue(entry.path, f"cannot stat: {exc.strerror or exc}"))
        stack.extend(sorted(subdirs, reverse=True))
    found.sort(key=lambda f: f.path)
    return found, issues
