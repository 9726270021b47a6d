"""Broadcast WAV metadata: the `bext` chunk's Description and the iXML chunk's `<NOTE>` and `<USER>` fields.

`bext` (EBU Tech 3285) is a fixed layout whose first 256 bytes are an ASCII Description; soundsearch rewrites
those bytes only and keeps the rest (originator, time reference, UMID, loudness, coding history) as it was.
iXML is XML under a `<BWFXML>` root; soundsearch sets its fields inside `<USER>` as Soundminer does and keeps
every other element, comments included.
"""

from __future__ import annotations

import unicodedata
from xml.etree import ElementTree

from indexer.tagfields import TagFields, TagsRefused

BEXT_DESCRIPTION_BYTES = 256
_BEXT_V0_BYTES = 602  # the fixed part of a version-0 bext chunk, no coding history
IXML_LIMIT = 1 << 20  # what a reader takes of an iXML chunk; real ones are a few kB


def bext_description(data: bytes | None) -> str | None:
    if not data:
        return None
    return data[:BEXT_DESCRIPTION_BYTES].split(b"\x00", 1)[0].decode("latin-1").strip() or None


def bext_text(description: str) -> str:
    """`description` as the 256 ASCII characters of a bext Description: accents dropped ("café" → "cafe"),
    other characters left out, a long text cut at a word where one is near."""
    plain = unicodedata.normalize("NFKD", description)
    text = "".join(c for c in plain if c.isascii() and (c.isprintable() or c == " ")).strip()
    if len(text) > BEXT_DESCRIPTION_BYTES:
        cut = text[:BEXT_DESCRIPTION_BYTES]
        space = cut.rfind(" ")
        text = cut[:space] if space > BEXT_DESCRIPTION_BYTES - 40 else cut
    return text


def bext_with_description(old: bytes | None, description: str) -> bytes:
    """A bext chunk saying `description`, otherwise as `old` was (a fresh version-0 chunk when there was none)."""
    field = bext_text(description).encode("ascii").ljust(BEXT_DESCRIPTION_BYTES, b"\x00")
    if old is not None and len(old) >= BEXT_DESCRIPTION_BYTES:
        return field + old[BEXT_DESCRIPTION_BYTES:]
    return field + bytes(_BEXT_V0_BYTES - BEXT_DESCRIPTION_BYTES)


def read_ixml(data: bytes | None) -> TagFields:
    """The USER fields and the first non-empty NOTE of an iXML chunk; empty when it is missing or not XML."""
    root = _parse(data)
    if root is None:
        return TagFields()
    notes = (el.text.strip() for el in root.iter() if _name(el) == "NOTE" and el.text)
    user = _child(root, "USER")
    found = {_name(el): el.text or "" for el in user if isinstance(el.tag, str)} if user is not None else {}
    return TagFields.from_fields(found, note=next((n for n in notes if n), None))


def ixml_with_fields(old: bytes | None, tags: TagFields) -> bytes:
    """An iXML document with `tags` set inside `<USER>`, every other element of `old` kept.

    An iXML chunk that is not XML is refused rather than replaced: it may hold a recordist's notes.
    """
    if old is not None and old.strip(b"\x00 \t\r\n"):
        root = _parse(old)
        if root is None:
            raise TagsRefused("its iXML chunk is not well-formed XML (left as it is, so nothing in it is lost)")
    else:
        root = ElementTree.Element("BWFXML")
        ElementTree.SubElement(root, "IXML_VERSION").text = "2.10"
    user = _child(root, "USER")
    if user is None:
        user = ElementTree.SubElement(root, "USER")
    for name, value in tags.as_fields().items():
        element = _child(user, name)
        if element is None:
            element = ElementTree.SubElement(user, name)
        element.text = value
    # The declaration spelled as field recorders and Soundminer write it.
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode").encode()


def _parse(data: bytes | None) -> ElementTree.Element | None:
    if not data:
        return None
    # Comments and processing instructions are kept, so that a rewrite keeps them too.
    parser = ElementTree.XMLParser(target=ElementTree.TreeBuilder(insert_comments=True, insert_pis=True))
    try:
        parser.feed(data.split(b"\x00", 1)[0])
        return parser.close()
    except ElementTree.ParseError:
        return None


def _name(element: ElementTree.Element) -> str:
    return element.tag.upper() if isinstance(element.tag, str) else ""


def _child(parent: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((el for el in parent if _name(el) == name), None)
