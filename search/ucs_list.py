"""The UCS category list, read from the CSV export of the spreadsheet users download from the UCS site.

The Universal Category System (public domain, universalcategorysystem.com) ships as a spreadsheet whose
English columns are `Category, SubCategory, CatID, CatShort, Explanations, Synonyms - Comma Separated`,
followed in the full release by translations (`Category_fr`, `SubCategory_fr`, ...). People export it as CSV
from Excel, Numbers or LibreOffice, which gives, depending on the program and the locale: UTF-8 with or without
a byte-order mark, Windows-1252, UTF-16 ("Unicode text", tab-separated), commas or semicolons, and sometimes a
title row above the header. All of those load here; what cannot be trusted (no CatID column, a CatID twice, a
CatID that cannot go into a file name) is refused with the line to look at.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import SoundsearchError

UCS_TAG_SOURCE = "ucs"  # the tag source of CatIDs that `soundsearch ucs` assigns (search filters use it)
HEADER_SEARCH_ROWS = 20  # a title block above the header is a few rows at most
_CAT_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Header cells, lower-cased with everything but letters removed, and the field each one fills.
_COLUMNS = {
    "category": "category",
    "subcategory": "subcategory",
    "catid": "cat_id",
    "catshort": "cat_short",
    "explanations": "explanation",
    "explanation": "explanation",
    "synonyms": "synonyms",
    "synonymscommaseparated": "synonyms",
}


class UcsListError(SoundsearchError):
    """A UCS category list that cannot be used as given."""


@dataclass(frozen=True)
class UcsCategory:
    cat_id: str  # "DOORWood": what file names and tags carry
    category: str  # "DOORS"
    subcategory: str  # "WOOD"
    cat_short: str = ""  # "DOOR"
    explanation: str = ""
    synonyms: tuple[str, ...] = ()


def load_ucs_csv(path: str | Path) -> list[UcsCategory]:
    """Every category of a UCS CSV export, in its order."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UcsListError(f"cannot read the UCS list {p}: {exc.strerror or exc}") from None
    text = _decode(raw)
    delimiter = _delimiter(text)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header_at = next((i for i, row in enumerate(rows[:HEADER_SEARCH_ROWS]) if "catid" in map(_cell_key, row)), None)
    if header_at is None:
        raise UcsListError(
            f"{p} has no CatID column in its first {HEADER_SEARCH_ROWS} rows: give the CSV export of the UCS "
            "spreadsheet (columns Category, SubCategory, CatID, CatShort, Explanations, Synonyms)"
        )
    columns = _columns(rows[header_at], p)
    categories: list[UcsCategory] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[header_at + 1 :], start=header_at + 2):
        values = {field: row[i].strip() if i < len(row) else "" for field, i in columns.items()}
        if not values["cat_id"]:
            continue  # blank rows and spacer rows of the spreadsheet
        cat_id = values["cat_id"]
        if not _CAT_ID.fullmatch(cat_id):
            raise UcsListError(f"{p}, line {line}: CatID {cat_id!r} is not letters and digits")
        if not values["category"] or not values["subcategory"]:
            raise UcsListError(f"{p}, line {line}: CatID {cat_id} has no Category or SubCategory")
        if cat_id.lower() in seen:
            first = seen[cat_id.lower()]
            raise UcsListError(f"{p}, line {line}: CatID {cat_id} is listed twice (first on line {first})")
        seen[cat_id.lower()] = line
        synonyms = (s.strip() for s in values.get("synonyms", "").split(","))
        categories.append(
            UcsCategory(
                cat_id=cat_id,
                category=values["category"],
                subcategory=values["subcategory"],
                cat_short=values.get("cat_short", ""),
                explanation=values.get("explanation", ""),
                synonyms=tuple(dict.fromkeys(s for s in synonyms if s)),
            )
        )
    if not categories:
        raise UcsListError(f"{p} lists no categories under its header")
    return categories


def _decode(raw: bytes) -> str:
    """The text of the file, whichever encoding a spreadsheet program chose."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    if b"\x00" in raw[:200]:  # UTF-16 without its byte-order mark: ASCII letters leave every other byte zero
        return raw.decode("utf-16-le" if raw[1:2] == b"\x00" else "utf-16-be", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Excel's "CSV" on Windows and older Macs: Windows-1252, whose few undefined bytes Latin-1 takes.
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def _delimiter(text: str) -> str:
    """Comma, semicolon (Excel in locales with a decimal comma) or tab, as the header line uses."""
    for line in text.splitlines()[:HEADER_SEARCH_ROWS]:
        if "catid" in _cell_key(line):
            return max((",", ";", "\t"), key=line.count)
    return ","


def _cell_key(cell: str) -> str:
    return re.sub(r"[^a-z]", "", cell.lower())


def _columns(header: list[str], path: Path) -> dict[str, int]:
    """Field name → column index, for the English columns; translations (`Category_fr`) are skipped."""
    columns: dict[str, int] = {}
    for i, cell in enumerate(header):
        field = None if "_" in cell else _COLUMNS.get(_cell_key(cell))
        if field is not None and field not in columns:
            columns[field] = i
    required = (("Category", "category"), ("SubCategory", "subcategory"))
    missing = [name for name, field in required if field not in columns]
    if missing:
        raise UcsListError(f"{path}: the header has a CatID column but no {' or '.join(missing)} column")
    return columns
