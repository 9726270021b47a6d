"""The server's side of the settings (`indexer.settings.Settings`, one object for the library and the server).

`create_app(settings)` stores them on the app; routes receive them with `Depends(get_settings)`, so a
test can build an app with its own settings or override the dependency.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from indexer.errors import SoundsearchError
from indexer.settings import Settings

__all__ = ["Settings", "check_bind", "get_settings", "is_loopback"]

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """Refuse to expose the server beyond this machine without a key, unless told explicitly."""
    if is_loopback(settings.host) or settings.api_key is not None or settings.allow_public:
        return
    raise SoundsearchError(
        f"refusing to listen on {settings.host} without an API key: anyone who can reach it could index "
        "folders and read the library. Set SOUNDSEARCH_API_KEY (or --api-key), listen on 127.0.0.1, or pass "
        "--allow-public if this network is trusted"
    )
