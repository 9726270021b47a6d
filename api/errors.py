"""Every error a client can cause, mapped to an HTTP status in one place.

Routes raise domain exceptions (the project's `SoundsearchError` family, or the few HTTP-only ones
below) and never build error responses themselves. Bodies are FastAPI's usual `{"detail": "..."}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas import Problem
from indexer.errors import AudioDecodeError, EncoderLoadError, SoundsearchError
from indexer.regions import RegionError
from search.query import QueryError
from storage.catalog import CatalogError

log = logging.getLogger(__name__)


class ApiError(SoundsearchError):
    """A request the HTTP layer itself refuses; `status` says how."""

    status = 400


class NotFound(ApiError):
    status = 404


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class Conflict(ApiError):
    status = 409


class UploadTooLarge(ApiError):
    status = 413


class UnsupportedMedia(ApiError):
    status = 415


class Unavailable(ApiError):
    status = 503


# Most specific first: the first matching class decides.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (AudioDecodeError, 422),  # the bytes are audio-shaped but cannot be decoded: the reason says why
    (QueryError, 422),  # a well-formed request whose values cannot be searched (empty query, bad labels)
    (RegionError, 422),  # a region outside the file, or a lossy source that cannot be cut exactly
    (CatalogError, 409),  # the catalog is busy (another indexing run) or bound to another model
    (EncoderLoadError, 503),
    (SoundsearchError, 400),
)

_DESCRIPTIONS = {
    400: "bad request",
    401: "API key missing",
    403: "API key wrong, or a path outside the library roots",
    404: "no such file or job",
    409: "conflict with the catalog's state (another indexing run, another model)",
    413: "upload too large",
    415: "not an audio file",
    422: "invalid input, or audio that cannot be decoded",
    503: "model not available",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return."""
    return {code: {"model": Problem, "description": _DESCRIPTIONS[code]} for code in (400, 422, *codes)}


def status_of(exc: Exception) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def detail_of(exc: Exception) -> str:
    # A decode error's message starts with the (temporary, server-side) path: clients get the reason.
    return exc.reason if isinstance(exc, AudioDecodeError) else str(exc)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
    return JSONResponse({"detail": detail_of(exc)}, status_code=status, headers=headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    # One error shape for every status: FastAPI's list of validation errors, as one sentence.
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",)) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SoundsearchError, _handle)
    app.add_exception_handler(RequestValidationError, _invalid)
