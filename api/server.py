"""Serving the app under uvicorn, with deadlines for idle and slow clients.

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
import socket
from pathlib import Path
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import ChangeReload

from api import address
from api.settings import Settings


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


class AddressedServer(uvicorn.Server):
    """uvicorn's server that writes the catalog's address file (api.address) once it listens, so that the
    CLI's reads come here, and removes it when it stops."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self.home: Path | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        services = self.app.state.services
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


def _url(sockname: Any) -> str:
    """A URL this machine's clients can reach the listening socket at (a wildcard bind means loopback)."""
    host, port = str(sockname[0]), int(sockname[1])
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"http://[{ip}]:{port}" if ip.version == 6 else f"http://{ip}:{port}"


def serve(app: Any, settings: Settings, **kwargs: Any) -> None:
    """Run the app (an ASGI app, or an import string with `factory=True`) until interrupted.

    An app object is served by an `AddressedServer`: the CLI finds it through the catalog's address file.
    """
    config = ServerConfig(app, settings, **kwargs)
    server = AddressedServer(config, app) if isinstance(app, FastAPI) else uvicorn.Server(config)
    if config.should_reload:
        # What `uvicorn.run` does for --reload, with this configuration (it is handed to the child).
        ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
    else:
        server.run()
