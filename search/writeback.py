"""What the catalog knows about a file, written into the file itself so that it travels with it.

Tags (as keywords), the caption (as the description) and the UCS fields go into the file's own metadata
(`indexer.filetags`). Afterwards the catalog records the file's new size, time and content hash, and the words
the indexer now reads from it: the next index run sees the file unchanged and does not embed it again.

Why the stored hash is updated rather than made to cover the audio only: the hash is how every index run and
`reindex` recognise unchanged and moved files, for every format and for object storage; a hash of the audio
payload alone would need a parser per container in that path, and changing what the hash covers would make
every existing catalog's hashes stale, i.e. re-embed every library once. soundsearch knows exactly when it
rewrote a file's tags, so it records the result there and then. (A file retagged by another program is still
embedded again: its bytes changed and soundsearch cannot tell what changed.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from indexer import objectstore
from indexer.filetags import WriteBackError, write_file_tags
from indexer.metadata import parse_ucs, read_embedded_text
from indexer.pipeline import file_hash
from indexer.tagfields import TagFields
from search.ucs_list import UCS_TAG_SOURCE, UcsCategory
from storage.catalog import Catalog, FileRecord


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # nothing known to write
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"written": self.written, "skipped": self.skipped, "errors": self.errors}


def known_fields(
    catalog: Catalog, file_ids: Sequence[int], categories: Sequence[UcsCategory] = ()
) -> dict[int, TagFields]:
    """The fields the catalog can vouch for: caption, tags, UCS CatID (with its category and subcategory when
    the UCS list is given) and the FXName/CreatorID/SourceID of a file named the UCS way."""
    by_id = {c.cat_id.lower(): c for c in categories}
    notes = catalog.annotations(file_ids)
    ucs_tags = catalog.tags_from(UCS_TAG_SOURCE, file_ids)
    paths = catalog.paths(file_ids)
    out: dict[int, TagFields] = {}
    for file_id, path in paths.items():
        tags, caption = notes.get(file_id, ((), None))
        named = parse_ucs(os.path.splitext(os.path.basename(path))[0])
        cat_id = ucs_tags[file_id][0][0] if file_id in ucs_tags else named.cat_id if named else None
        category = by_id.get(cat_id.lower()) if cat_id else None
        out[file_id] = TagFields(
            description=caption,
            keywords=tuple(t for t in tags if t not in {label for label, _ in ucs_tags.get(file_id, [])}),
            fx_name=named.fx_name if named else None,
            cat_id=cat_id,
            category=category.category if category else None,
            subcategory=category.subcategory if category else None,
            creator_id=named.creator_id if named else None,
            source_id=named.source_id if named else None,
        )
    return out


def write_back(catalog: Catalog, fields: Mapping[int, TagFields]) -> WriteReport:
    """Write each file's fields into it; one that fails is reported and left as it was, the others go on."""
    report = WriteReport()
    for file_id, tags in fields.items():
        record = catalog.file(file_id)
        if record is None:
            continue
        if tags.empty:
            report.skipped.append(str(record.path))
            continue
        reason = _write_one(catalog, record, tags)
        if reason is None:
            report.written.append(str(record.path))
        else:
            report.errors.append({"path": str(record.path), "reason": reason})
    return report


def _write_one(catalog: Catalog, record: FileRecord, tags: TagFields) -> str | None:
    """Write into one file and record its new state in the catalog; why not, when it could not be done."""
    path = str(record.path)
    if objectstore.is_url(path):
        return "tags are written into local files only"
    try:
        # Recording the new hash vouches for the sound: a file whose sound changed since it was indexed would
        # then never be embedded again.
        if file_hash(path) != record.content_hash:
            return "it changed since it was indexed: index it again first"
        write_file_tags(path, tags)
    except WriteBackError as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    st = os.stat(path)
    embedded = read_embedded_text(path)  # what an index run would read from the new file
    catalog.file_rewritten(
        record.id,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        content_hash=file_hash(path),
        title=embedded.title,
        comment=embedded.comment,
    )
    return None
