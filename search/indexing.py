"""One indexing run, the same from every front end: index the folders, tag what changed with the catalog's
enabled taggers, caption it when asked, then re-plan the vector index for the catalog's new size.

`soundsearch index` and the server's indexing job (`POST /api/index`) both call `index_library`, so a file
indexed either way ends up alike: embedded, tagged by the same heads, captioned by the same rule. The steps
run under the catalog's run lock only while embedding (`indexer.pipeline`): tags and captions are
per-file writes that another run may interleave with safely.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioning.catalog import FileCaptioner, caption_catalog_files
from indexer.encoders.base import Encoder
from indexer.pipeline import Executor, IndexOptions, IndexSummary, Progress, index_paths
from search.tagger import apply_enabled_taggers
from storage.catalog import Catalog


class RunProgress(Progress):
    """Progress of a whole run: the embedding's files and audio (`Progress`), and which step is going on."""

    def stage(self, name: str) -> None: ...


# The steps `RunProgress.stage` hears, in order ("captioning" only when captions were asked for).
STAGES = ("indexing", "tagging", "captioning", "planning the vector index")


@dataclass
class IndexingResult:
    summary: IndexSummary
    tagged: dict[str, int] = field(default_factory=dict)  # files tagged, per enabled tagger
    captioned: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "tagged": self.tagged, "captioned": self.captioned}


def index_library(
    catalog: Catalog,
    encoder: Encoder,
    roots: Sequence[str | Path],
    *,
    options: IndexOptions | None = None,
    progress: RunProgress | None = None,
    captioner: Callable[[], FileCaptioner] | None = None,
    executor: Executor | None = None,
) -> IndexingResult:
    """Bring the catalog up to date with `roots`, then tag (and caption, with `captioner`) the new and
    changed files. `captioner` is called only when there is something to caption: loading one costs
    seconds."""
    steps = progress or RunProgress()
    steps.stage("indexing")
    summary = index_paths(catalog, encoder, roots, options=options, progress=progress, executor=executor)
    result = IndexingResult(summary)
    changed = summary.changed_file_ids
    if changed:
        steps.stage("tagging")
        result.tagged = apply_enabled_taggers(catalog, changed)
        if captioner is not None:
            steps.stage("captioning")
            result.captioned = len(caption_catalog_files(catalog, captioner(), changed))
    steps.stage("planning the vector index")
    catalog.maybe_rebuild_index()  # a new size (or memory budget) may call for another index type
    return result
