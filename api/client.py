"""The CLI's side of a running server: JSON over HTTP with the standard library (httpx takes longer to import)."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from api.address import ServerAddress
from indexer.errors import SoundsearchError

REQUEST_TIMEOUT_S = 300.0  # a search waits behind an indexing run's model calls


class ServerUnreachable(SoundsearchError):
    """The server went away between finding it and asking it: the caller works locally instead."""


class ServerClient:
    def __init__(self, address: ServerAddress) -> None:
        self.address = address
        parts = urlsplit(address.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80

    def get(self, path: str, params: Sequence[tuple[str, Any]] = ()) -> Any:
        query = urlencode([(key, value) for key, value in params if value is not None])
        return self._request("GET", f"{path}?{query}" if query else path, None, {})

    def post_form(self, path: str, fields: Sequence[tuple[str, str]], file: Path | None = None) -> Any:
        """A multipart form (`fields`, and `file` as the field "file"), as the upload endpoints take it."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for name, value in fields:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        if file is not None:
            # Quoted and escaped; the server echoes the name back as the prediction's source.
            filename = json.dumps(str(file), ensure_ascii=False)
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename={filename}\r\n'
            parts.append(f"{head}Content-Type: application/octet-stream\r\n\r\n".encode() + file.read_bytes() + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self._request(
            "POST", path, b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )

    def _request(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Any:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=REQUEST_TIMEOUT_S)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except ConnectionError as exc:
            raise ServerUnreachable(f"the server at {self.address.url} went away: {exc}") from None
        finally:
            connection.close()
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if response.status >= 400:
            detail = data.get("detail") if isinstance(data, dict) else None
            raise SoundsearchError(str(detail or f"the server at {self.address.url} answered {response.status}"))
        return data
