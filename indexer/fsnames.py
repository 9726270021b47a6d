"""File names that are not valid UTF-8: kept exactly, stored as text, shown readably.

Linux file names are bytes. Archives unpacked from Windows or old Macs often carry Latin-1 names
(`latin1_\\xe9t\\xe9.wav`), which Python's `os` functions hand over as `str` with each undecodable byte
as a lone surrogate (U+DC80-U+DCFF, PEP 383 "surrogateescape"). Such a `str` opens the file again
through `os`/`open`, but it cannot be encoded as UTF-8: not by libsndfile's path argument, not by
SQLite or PostgreSQL, not in a JSON response. So:

- in memory a path is that `str` (reversible: `os.fsencode` gives the bytes back);
- libraries that take a path get `os.fsencode(path)` (bytes), never the `str`;
- the catalog stores `to_stored(path)`, where each escaped byte becomes U+FFFF and two hex digits.
  U+FFFF is a Unicode noncharacter, reserved for exactly this kind of internal use; a literal one in a
  name is doubled, so the mapping is reversible for every name, the identity for every name that has
  neither, and prefix-preserving (a folder's stored form is a prefix of its files' stored forms, which
  the catalog's `LIKE 'folder/%'` queries rely on);
- people see `display(path)`, with U+FFFD where a byte could not be decoded.
"""

from __future__ import annotations

import re

_ESC = "\uffff"
_TO_STORED = re.compile("[\udc80-\udcff\uffff]")
_FROM_STORED = re.compile("\uffff(\uffff|[0-9a-f]{2})")


def to_stored(path: str) -> str:
    """The catalog's text form of a path (valid UTF-8 whatever the name's bytes)."""
    return _TO_STORED.sub(lambda m: _ESC * 2 if m[0] == _ESC else f"{_ESC}{ord(m[0]) - 0xDC00:02x}", path)


def from_stored(text: str) -> str:
    """The path a `to_stored` text stands for."""
    return _FROM_STORED.sub(lambda m: _ESC if m[1] == _ESC else chr(0xDC00 + int(m[1], 16)), text)


def display(path: str) -> str:
    """A path for people (JSON, terminal): undecodable bytes shown as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
