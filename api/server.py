"""Serving the app under uvicorn: one process or several sharing the port, with deadlines for slow clients.

`serve --workers N` runs N processes over one catalog. Each keeps its own vectors and words in memory and
catches up with what any process committed (the catalog's generation, `Catalog.refresh`) at its next search,
so all of them serve the same data; each also loads its own copy of the model.

uvicorn's h11 protocol closes a connection idle *between* requests after `timeout_keep_alive`, but it
arms that timer only once a response is sent: a connection that never sends a byte, or sends its
request head a byte at a time (slowloris), is held forever (220 such sockets stayed open in a test).
`GuardedH11Protocol` gives every request head a deadline from the moment the server waits for it;
a request body that stalls between two chunks is cut off by `api.uploads.BodyLimit`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import ChangeReload, Multiprocess

from api.settings import Settings
from indexer.errors import SoundsearchError
from indexer.settings import use

WORKER_HEALTHCHECK_S = 60


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the request-head deadline its protocol reads."""

    def __init__(self, app: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            app,
            host=settings.host,
            port=settings.port,
            http=GuardedH11Protocol,
            timeout_keep_alive=settings.keep_alive_timeout,
            **kwargs,
        )
        self.header_timeout = settings.header_timeout

    @property
    def should_reload(self) -> bool:
        # uvicorn reloads only apps named by an import string (a live app cannot be imported afresh); an
        # `AppFactory` is rebuilt from the new code in each new process just the same.
        return self.reload


@dataclass(frozen=True)
class AppFactory:
    """Builds the app from `settings` in each server process (uvicorn's `factory=True`).

    uvicorn hands its configuration to worker and reloader processes by pickling it: a live app cannot
    travel that way, this can, and it carries the command-line options along (no environment to write).
    """

    settings: Settings

    def __call__(self) -> Any:
        # Imported here: a worker unpickles this before it answers the supervisor's health checks, and
        # the app's imports (torch) take seconds.
        from api.app import create_app

        use(self.settings)  # the library in this process reads the server's settings too
        return create_app(self.settings)


class GuardedH11Protocol(H11Protocol):
    """h11 with a deadline on each request head: the connection closes if it is not complete in time.

    The clock starts when the server starts waiting for a head: on connect, and when a kept-alive
    connection sends the first bytes of its next request (until then uvicorn's keep-alive timer runs).
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        assert isinstance(config, ServerConfig), "GuardedH11Protocol runs under a ServerConfig"
        self.header_timeout = config.header_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        # Client state IDLE: no complete request head yet in this cycle. Bytes of it may be buffered.
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not waiting:
            self._stop_head_timer()
        elif self._head_timer is None and self.timeout_keep_alive_task is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def serve(settings: Settings, *, reload: bool = False, **kwargs: Any) -> None:
    """Serve the app built from `settings` until SIGINT or SIGTERM: in this process, in `settings.workers`
    processes sharing one listening socket, or (`reload`) in a child restarted when the code changes.

    What `uvicorn.run` does, with our configuration; the supervisors pass SIGINT/SIGTERM on to the workers
    and wait for them to finish their requests.
    """
    config = ServerConfig(
        AppFactory(settings),
        settings,
        factory=True,
        reload=reload,
        workers=settings.workers,
        # A worker answers health checks only once its imports are done: seconds on a busy machine, where
        # uvicorn's 5 s default had the supervisor kill and restart every worker before it started.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **kwargs,
    )
    server = uvicorn.Server(config)
    if config.should_reload:
        ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
    elif config.workers > 1:
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
            raise SoundsearchError("a server worker failed to start (its error is logged above)")
    else:
        server.run()
