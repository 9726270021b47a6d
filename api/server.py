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
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import ChangeReload, Multiprocess

from api import address
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


@dataclass
class AppFactory:
    """Builds the app from `settings` in each server process (uvicorn's `factory=True`).

    uvicorn hands its configuration to worker and reloader processes by pickling it: a live app cannot
    travel that way, this can, and it carries the command-line options along (no environment to write).
    `built` is the app this process made (the address file reads its catalog), never pickled.
    """

    settings: Settings
    built: FastAPI | None = field(default=None, compare=False, repr=False)

    def __call__(self) -> FastAPI:
        # Imported here: a worker unpickles this before it answers the supervisor's health checks, and
        # the app's imports (torch) take seconds.
        from api.app import create_app

        use(self.settings)  # the library in this process reads the server's settings too
        self.built = create_app(self.settings)
        return self.built

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "built": None}


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
    and wait for them to finish their requests. The catalog's address file (api.address) names whichever
    process owns the socket, so the CLI's reads come here.
    """
    factory = AppFactory(settings)
    config = ServerConfig(
        factory,
        settings,
        factory=True,
        reload=reload,
        workers=settings.workers,
        # A worker answers health checks only once its imports are done: seconds on a busy machine, where
        # uvicorn's 5 s default had the supervisor kill and restart every worker before it started.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **kwargs,
    )
    if config.should_reload:
        ChangeReload(config, target=uvicorn.Server(config).run, sockets=[config.bind_socket()]).run()
    elif config.workers > 1:
        sock = config.bind_socket()
        with _published_when_ready(settings, sock):
            supervisor = Supervisor(config, sockets=[sock])
            supervisor.run()
        if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
            raise SoundsearchError("a server worker failed to start (its error is logged above)")
    else:
        with _signals_not_ignored():
            AddressedServer(config, factory).run()


class Supervisor(Multiprocess):
    """uvicorn's supervisor of workers, told at once when one of the workers it starts with dies, even before
    that worker answers a health check (one it restarts later is uvicorn's own, as before)."""

    def init_processes(self) -> None:
        super().init_processes()
        for worker in self.processes:
            # The worker has its own copy of this end of the health-check pipe once started; the parent's
            # copy kept the pipe open after the worker died, so a worker failing at startup (a missing model)
            # was only noticed when its ping timed out, WORKER_HEALTHCHECK_S later. Closed, the ping reads EOF.
            worker.child_conn.close()


class AddressedServer(uvicorn.Server):
    """uvicorn's server that writes the catalog's address file (api.address) once it listens, and removes it
    when it stops."""

    def __init__(self, config: uvicorn.Config, factory: AppFactory) -> None:
        super().__init__(config)
        self.factory = factory
        self.home: Path | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        app = self.factory.built
        services = app.state.services if app is not None else None
        if not self.started or services is None or not self.servers:
            return
        catalog = services.catalog
        url = _url(self.servers[0].sockets[0].getsockname())
        record = address.ServerAddress(
            url, os.getpid(), services.catalog_id, address.database_fingerprint(catalog.database_url)
        )
        address.publish(catalog.home, record)
        self.home = catalog.home

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            if self.home is not None:
                address.withdraw(self.home, os.getpid())


@contextmanager
def _signals_not_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM end the server the way they end any command (KeyboardInterrupt: the CLI's 130; death
    by SIGTERM), even in a process that inherited them ignored, as a script's `soundsearch serve &` does.

    uvicorn catches both while it serves, whatever the process had, shuts down, then re-raises each signal it
    caught to the handler it found: an inherited SIG_IGN swallowed it and a Ctrl-C ended as a clean exit 0.
    A handler a host installed is left alone: uvicorn hands the signal on to it.
    """
    ignored = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is signal.SIG_IGN]
    for sig in ignored:
        signal.signal(sig, signal.default_int_handler if sig is signal.SIGINT else signal.SIG_DFL)
    try:
        yield
    finally:
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)


@contextmanager
def _published_when_ready(settings: Settings, sock: socket.socket) -> Iterator[None]:
    """The address file for a supervisor of workers: written (with the supervisor's pid, which outlives any
    one worker) once a worker answers /healthz, removed when the supervisor stops."""
    from storage.location import database_url, resolve_home

    home = resolve_home(settings.home)
    url = _url(sock.getsockname())
    fingerprint = address.database_fingerprint(database_url(home, settings.db_url))
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            try:
                catalog_id = address.serving_catalog(url)
            except OSError:  # no worker answers yet
                catalog_id = None
            if catalog_id is not None:
                address.publish(home, address.ServerAddress(url, os.getpid(), catalog_id, fingerprint))
                return
            stop.wait(0.5)

    watcher = threading.Thread(target=publish, name="publish-address", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        address.withdraw(home, os.getpid())


def _url(sockname: Any) -> str:
    """A URL this machine's clients can reach the listening socket at (a wildcard bind means loopback)."""
    host, port = str(sockname[0]), int(sockname[1])
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"http://[{ip}]:{port}" if ip.version == 6 else f"http://{ip}:{port}"
