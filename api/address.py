"""The address file: how `soundsearch serve` tells the CLI where it listens, so that reads go through it.

A search from the CLI alone pays for importing torch and loading the model every time (7 s on a laptop); a
running server has both loaded and answers in milliseconds. `serve` writes `<home>/server.json` (url, pid,
catalog id, a fingerprint of the database URL) once it listens, and removes it on a clean shutdown. The CLI
trusts the file only if the process is alive, a quick `/healthz` answers, and the answer names the same
catalog: a file left by a killed server, a port taken over by another program or another catalog's server,
or a server on another database than the one the CLI was pointed at, is ignored. A file whose server is
certainly gone (no such process, nothing listening, another catalog) is removed; one whose server merely
answers slowly is left alone.

Only the standard library is imported: the point is to answer before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from storage.atomic import atomic_write_text

ADDRESS_NAME = "server.json"
HEALTH_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerAddress:
    url: str  # http://host:port, no trailing slash
    pid: int
    catalog_id: str
    database: str  # `database_fingerprint` of the server's database URL (no password on disk)


def database_fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def address_path(home: Path) -> Path:
    return home / ADDRESS_NAME


def publish(home: Path, address: ServerAddress) -> None:
    atomic_write_text(address_path(home), json.dumps(asdict(address), indent=2) + "\n")


def withdraw(home: Path, pid: int) -> None:
    """Remove the address file if this process wrote it (another server may have replaced it since)."""
    path = address_path(home)
    current = read(path)
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)


def read(path: Path) -> ServerAddress | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        address = ServerAddress(
            url=str(data["url"]),
            pid=int(data["pid"]),
            catalog_id=str(data["catalog_id"]),
            database=str(data["database"]),
        )
        if address.pid <= 0:  # os.kill would signal a process group
            raise ValueError(f"pid {address.pid}")
        return address
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # torn by hand, or from another version
        log.info("ignoring %s: %s", path, exc)
        return None


def find_server(home: Path, database_url: str) -> ServerAddress | None:
    """The live server of this catalog, per its address file; None (the caller works locally) otherwise."""
    path = address_path(home)
    address = read(path)
    if address is None:
        return None
    if address.database != database_fingerprint(database_url):
        log.info("the server at %s serves another database than %s", address.url, database_url)
        return None
    verdict = _check(address)
    if verdict == "alive":
        return address
    log.info("ignoring %s: %s", path, verdict)
    if verdict != "slow":
        _remove_if_unchanged(path, address)
    return None


def _check(address: ServerAddress) -> str:
    """ "alive", or why not: "gone" (no process, nothing listening, another catalog) vs "slow" (no verdict)."""
    if not _process_exists(address.pid):
        return f"gone: process {address.pid} has ended"
    try:
        catalog_id = serving_catalog(address.url)
    except ValueError:
        return f"gone: not an address this CLI can use ({address.url})"
    except (TimeoutError, http.client.RemoteDisconnected):
        return "slow"
    except OSError as exc:  # refused, reset: nobody (or not an HTTP server) listens there
        return f"gone: {exc}"
    if catalog_id != address.catalog_id:
        return f"gone: {address.url} does not serve catalog {address.catalog_id}"
    return "alive"


def serving_catalog(url: str) -> str | None:
    """The catalog id a soundsearch server at `url` names on /healthz; None when something else answers.

    Raises ValueError for a URL that is not plain http://host:port, TimeoutError (or RemoteDisconnected) when
    no answer comes in time, another OSError when nothing listens there.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=HEALTH_TIMEOUT_S)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        catalog_id = json.loads(body).get("catalog_id") if response.status == 200 else None
    except (ValueError, AttributeError):
        return None
    return str(catalog_id) if catalog_id is not None else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _remove_if_unchanged(path: Path, stale: ServerAddress) -> None:
    # A new server may have written its own address since this one was read: leave that one.
    if read(path) == stale:
        path.unlink(missing_ok=True)
