"""Libraries in S3-compatible object storage: `soundsearch index s3://bucket/prefix`.

An object is a library file like any other, named by its URL (`s3://bucket/key`, stored as such in the
catalog): listed with its size and last-modified time (what decides "unchanged"), fingerprinted by its ETag
instead of a hash of its bytes (no download to notice that nothing changed, and a copy keeps its ETag, so a
moved object is recognised), and decoded from a local copy that lives as long as its decode (the decoders'
hostile-input checks need a seekable file; a copy costs a download, which decoding needs anyway).
Playback hands the player a presigned URL: its Range requests go to the storage, not through the server.

Credentials and endpoint come from the usual AWS variables and profiles (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `AWS_ENDPOINT_URL` for a non-AWS server). s3fs is an optional
dependency (`pip install soundsearch[s3]`), imported only here.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from indexer.errors import SoundsearchError
from indexer.formats import is_supported
from indexer.scan import FoundFile, WalkIssue

SCHEME = "s3://"
PRESIGNED_EXPIRY_S = 900  # long enough to play a long file through, short enough not to leak lasting access


class ObjectStoreError(SoundsearchError):
    """Object storage cannot be used as asked (no s3fs, no credentials, no such bucket)."""


def is_url(path: str | Path) -> bool:
    return isinstance(path, str) and path.startswith(SCHEME)


def as_root(root: str | Path) -> str | None:
    """`root` as a normalised `s3://bucket/prefix`, or None for a local path. A `Path` made from a URL has
    lost a slash ("s3:/bucket"): catalog roots come back as paths, and must still name their bucket."""
    text = str(root)
    if isinstance(root, Path) and text.startswith("s3:/") and not text.startswith(SCHEME):
        text = SCHEME + text[len("s3:/") :]
    if not text.startswith(SCHEME):
        return None
    rest = text[len(SCHEME) :].strip("/")
    if not rest:
        raise ObjectStoreError(f"{text}: give a bucket (s3://bucket or s3://bucket/prefix)")
    return SCHEME + rest


@functools.cache
def _filesystem() -> Any:
    try:
        import s3fs
    except ImportError:
        raise ObjectStoreError("s3:// libraries need s3fs: pip install 'soundsearch[s3]'") from None
    # No listing cache: a run must see objects written since the last one.
    return s3fs.S3FileSystem(use_listings_cache=False)


def check_root(url: str) -> str:
    """`url` if it names a bucket or prefix that can be listed; else one clear error."""
    fs = _filesystem()
    try:
        if not fs.exists(url):
            raise ObjectStoreError(f"{url}: no such bucket or prefix")
    except ObjectStoreError:
        raise
    except Exception as exc:  # botocore's credential and endpoint errors have no common base with OSError
        raise ObjectStoreError(f"{url}: cannot list ({type(exc).__name__}: {exc})") from exc
    return url


def walk_objects(url: str) -> tuple[list[FoundFile], list[WalkIssue]]:
    """Audio objects under `url` (hidden names skipped, as on disk), sorted by URL."""
    fs = _filesystem()
    try:
        listing: dict[str, dict[str, Any]] = fs.find(url, detail=True)
    except Exception as exc:
        return [], [WalkIssue(url, f"cannot list: {type(exc).__name__}: {exc}")]
    found = []
    for key, info in listing.items():
        name = PurePosixPath(key)
        if info.get("type") != "file" or not is_supported(name.name):
            continue
        if any(part.startswith(".") for part in name.parts[1:]):
            continue
        modified = info.get("LastModified")
        mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
        found.append(FoundFile(SCHEME + key, int(info["size"]), mtime_ns))
    found.sort(key=lambda f: f.path)
    return found, []


def content_hash(url: str) -> str:
    """The object's ETag: equal for equal uploads and kept by copies (a moved object is found by it)."""
    try:
        info = _filesystem().info(url)
    except OSError:
        raise
    except Exception as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    etag = str(info.get("ETag", "")).strip('"')
    if not etag:
        raise OSError("the storage gives no ETag")
    return f"etag:{etag}"


@contextmanager
def local_copy(url: str) -> Iterator[str]:
    """The object downloaded to a private temporary file (with its name, for its extension), removed after."""
    with tempfile.TemporaryDirectory(prefix="soundsearch-object-") as folder:
        local = os.path.join(folder, PurePosixPath(url).name)
        try:
            _filesystem().get_file(url, local)
        except OSError:
            raise
        except Exception as exc:
            raise OSError(f"cannot download: {type(exc).__name__}: {exc}") from exc
        yield local


def presigned_url(url: str, expires_s: int = PRESIGNED_EXPIRY_S) -> str:
    """A URL that lets a player read (and seek in) the object for `expires_s` seconds, no credentials needed."""
    return str(_filesystem().url(url, expires=expires_s))
