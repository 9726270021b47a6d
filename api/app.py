"""The FastAPI application: `create_app(settings)`; `soundsearch serve` runs it under uvicorn.

Models and the catalog are loaded in the lifespan (never at import), so importing this module is
cheap and tests choose their own settings, encoder and captioner.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api import errors
from api.jobs import JobRegistry
from api.routes import files, index, models, search, system
from api.routes.system import STATIC
from api.services import Captioner, LockedEncoder, Services
from api.settings import Settings
from api.uploads import BodyLimit
from indexer.encoders.base import Encoder
from indexer.errors import SoundsearchError
from indexer.settings import settings as configured_settings
from search.engine import Engine
from storage.catalog import Catalog, set_search_threads

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, encoder: Encoder | None = None, captioner: Captioner | None = None
) -> FastAPI:
    """The app; `encoder` replaces loading `settings.model` (tests), `captioner` plugs in captions."""
    settings = settings or configured_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = _load(settings, encoder, captioner)
        app.state.services = services
        log.info("serving %s with %s", services.catalog.home, services.encoder.model_id)
        try:
            yield
        finally:
            app.state.services = None
            services.jobs.join(timeout=5.0)
            services.engine.close()

    app = FastAPI(
        title="soundsearch",
        summary="Search a sound library by description, by example, or against labels you type.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.services = None
    errors.install(app)
    for router in (system.router, search.router, files.router, models.router, index.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_upload_bytes=settings.max_upload_bytes, body_timeout=settings.body_timeout)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges"],
        )
    return app


def _load(settings: Settings, encoder: Encoder | None, captioner: Captioner | None) -> Services:
    # One query at a time gains nothing from OpenMP here, and its threads spin against the request
    # threads for the same cores: a 20 000-vector search measured 44 ms with the default, 2.6 ms with 1
    # (2 busy cores; BENCHMARKS.md). Concurrency comes from serving requests in parallel instead.
    set_search_threads(settings.faiss_threads)

    def open_catalog(writable: bool) -> Catalog:
        return Catalog.open(settings.home, db_url=settings.db_url, writable=writable)

    catalog = open_catalog(writable=False)
    if encoder is None:
        encoder = catalog.load_encoder(settings.model)
        if captioner is None:
            captioner = _default_captioner(encoder)
    shared = LockedEncoder(encoder)
    engine = Engine(catalog, shared)  # refuses a model the catalog was not built with
    _ = catalog.index  # load the vectors now, not in the first request
    jobs = JobRegistry(lambda: open_catalog(writable=True), shared)
    services = Services(
        settings=settings,
        encoder=shared,
        engine=engine,
        jobs=jobs,
        limiter=anyio.CapacityLimiter(settings.work_slots),
        captioner=captioner,
    )
    jobs.on_done = services.refresh
    if captioner is not None:
        services.captioner = _Serialised(captioner, shared.lock)
    return services


class _Serialised:
    """A captioner that takes the shared encoder's lock: it runs the same model as searches do."""

    def __init__(self, inner: Captioner, lock: Any) -> None:
        self.inner = inner
        self.lock = lock
        self.model_id = inner.model_id

    def caption(self, path: Path) -> str:
        with self.lock:
            return self.inner.caption(path)


def _default_captioner(encoder: Encoder) -> Captioner | None:
    """The shipped captioner, sharing the server's encoder when it was trained on it."""
    from captioning.captioner import load_captioner

    try:
        try:
            return load_captioner(encoder=encoder)
        except SoundsearchError:
            return load_captioner()  # trained on another encoder: it brings its own
    except SoundsearchError as exc:
        log.warning("captioning disabled: %s", exc)
        return None
