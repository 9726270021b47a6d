"""Server settings: environment variables `SOUNDSEARCH_*` (or a `.env` file), overridable from the CLI.

`create_app(settings)` stores them on the app; routes receive them with `Depends(get_settings)`, so a
test can build an app with its own settings or override the dependency.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

from fastapi import Request
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from indexer.errors import SoundsearchError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOUNDSEARCH_", env_file=".env", extra="ignore")

    home: Path | None = Field(default=None, description="catalog folder (default: the per-user data folder)")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL (default: SQLite in the catalog folder)")
    model: str | None = Field(default=None, description="model spec (default: the catalog's own model)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(default=None, description="required by mutating endpoints when set")
    allow_public: bool = Field(
        default=False, description="listen on a non-loopback address without an API key (you were warned)"
    )
    max_upload_mb: float = Field(default=100.0, gt=0, description="largest accepted upload, in MB")
    # A few MB of FLAC hold hours of silence: the decoded length is capped apart from the size.
    max_upload_seconds: float = Field(
        default=1800.0, gt=0, description="longest accepted upload once decoded, in seconds (30 min)"
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, le=3600, description="seconds an idle connection stays open between requests"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, le=3600, description="seconds a client has to send a request's line and headers"
    )
    body_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="longest wait for the next part of a request body, in seconds"
    )
    # Env: SOUNDSEARCH_LIBRARY_ROOTS=/sounds/lib:/mnt/more (os.pathsep), SOUNDSEARCH_CORS_ORIGINS=a,b
    library_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders that POST /api/index may index (nothing else)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    concurrency: int | None = Field(
        default=None, ge=1, le=256, description="requests doing model/search work at once (default: 2 per core)"
    )
    faiss_threads: int = Field(
        default=1, ge=1, le=256, description="OpenMP threads per vector search (the server runs requests in parallel)"
    )

    @field_validator("library_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def work_slots(self) -> int:
        return self.concurrency or max(2, 2 * (os.cpu_count() or 1))

    def resolved_roots(self) -> list[Path]:
        # Resolved once here so that a symlinked root and a path through it compare equal.
        return [Path(r).expanduser().resolve() for r in self.library_roots]


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
