"""Walking library roots: every audio file once, with its size and mtime, never stuck in a loop."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from indexer.audio import is_supported


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute, as walked (symlinked folders keep their name in the library)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WalkIssue:
    path: str
    reason: str


def walk_audio(root: Path) -> tuple[list[FoundFile], list[WalkIssue]]:
    """Audio files under `root` (hidden files and folders skipped), plus what could not be walked.

    Symlinked folders are followed, but each real folder is visited once, so symlink loops end.
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
                if entry.is_dir(follow_symlinks=True):
                    subdirs.append(entry.path)
                elif is_supported(entry.name) and entry.is_file(follow_symlinks=True):
                    est = entry.stat(follow_symlinks=True)
                    found.append(FoundFile(entry.path, est.st_size, est.st_mtime_ns))
            except OSError as exc:
                issues.append(WalkIssue(entry.path, f"cannot stat: {exc.strerror or exc}"))
        stack.extend(sorted(subdirs, reverse=True))
    found.sort(key=lambda f: f.path)
    return found, issues
