"""Renaming indexed files on disk with the catalog following, and nothing lost on the way.

No file is overwritten, none leaves its folder, and none is embedded again: its row, vectors and tags move with
it (`Catalog.move_file`). `plan_renames` says what would happen (what `--dry-run` shows); a name already taken in
the folder, on disk or earlier in the plan, gets a UCS UserData block (`_02`, `_03`, ...). `apply_renames` takes
one file at a time: one that cannot be renamed (read-only, gone, its new name taken meanwhile, a name outside its
folder) is reported and left as it was, and the others go on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from indexer.errors import SoundsearchError
from storage.catalog import Catalog, CatalogError

# Errors of a file system without hard links (FAT, exFAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


class RenameError(SoundsearchError):
    """One file could not be renamed; it is as it was."""


@dataclass(frozen=True)
class Rename:
    file_id: int
    old: Path
    new: Path


@dataclass
class RenameReport:
    renamed: list[Rename] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def plan_renames(wanted: Sequence[tuple[int, Path, str]]) -> list[Rename]:
    """(file id, current path, wanted name) → the renames to make; a file already so named is left out."""
    taken: dict[Path, set[str]] = {}
    plan: list[Rename] = []
    for file_id, old, name in wanted:
        if name == old.name:
            continue
        # Compared case-blind: on macOS and Windows "a.wav" and "A.wav" are one file.
        folder = taken.setdefault(old.parent, _names_in(old.parent))
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, n = name, 2
        while candidate.lower() in folder:
            candidate, n = f"{stem}_{n:02d}{suffix}", n + 1
        folder.add(candidate.lower())
        plan.append(Rename(file_id, old, old.parent / candidate))
    return plan


def apply_renames(catalog: Catalog, plan: Sequence[Rename]) -> RenameReport:
    report = RenameReport()
    for r in plan:
        try:
            _check(r)
            _rename_no_clobber(r.old, r.new)
        except RenameError as exc:
            report.errors.append({"path": str(r.old), "reason": str(exc)})
            continue
        except OSError as exc:
            report.errors.append({"path": str(r.old), "reason": f"not renamed: {exc.strerror or exc}"})
            continue
        try:
            catalog.move_file(r.file_id, r.new)
        except CatalogError as exc:
            os.rename(r.new, r.old)  # back: the disk and the catalog agree again
            report.errors.append({"path": str(r.old), "reason": f"not renamed: {exc}"})
            continue
        report.renamed.append(r)
    return report


def _check(r: Rename) -> None:
    if r.new.parent != r.old.parent or r.new.name in ("", ".", ".."):
        raise RenameError(f"{r.new} is outside the file's folder: not renamed")
    try:
        st = r.old.lstat()
    except FileNotFoundError:
        raise RenameError("the file is no longer there (index the library again)") from None
    if not st.st_mode & 0o222 or not os.access(r.old, os.W_OK):
        raise RenameError("the file is read-only: not renamed")


def _rename_no_clobber(old: Path, new: Path) -> None:
    """Rename, refusing to replace a file that has the new name (`os.rename` would replace it silently)."""
    exists = RenameError(f"{new.name} already exists in the folder: not renamed")
    try:
        os.link(old, new, follow_symlinks=False)  # fails when `new` exists: the check and the act are one
    except FileExistsError:
        raise exists from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(new):  # no hard links here: check, then rename (a short window, the best there is)
            raise exists from None
        os.rename(old, new)
        return
    try:
        os.unlink(old)
    except OSError:
        os.unlink(new)  # one name, as before
        raise


def _names_in(folder: Path) -> set[str]:
    try:
        return {p.name.lower() for p in folder.iterdir()}
    except OSError:
        return set()
