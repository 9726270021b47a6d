"""soundsearch's configuration: one `Settings` object, read from `SOUNDSEARCH_*` environment variables (or `.env`).

The library (catalog, index chooser, encoders, SPICE) and the server read the same object through `settings()`
instead of each looking at the environment. `soundsearch serve` lays its command-line options over it with
`configure(...)` and hands the result to every server process. The README's settings table lists every field.

Parsing is cached per distinct set of `SOUNDSEARCH_*` variables: a change to the environment (a test's
`monkeypatch.setenv`) is seen by the next call, and an unchanged one costs a scan of `os.environ` (microseconds).
Importing this module costs pydantic-settings (~0.2 s): modules on the CLI's start-up path import it where used.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from indexer.errors import SoundsearchError

ENV_PREFIX = "SOUNDSEARCH_"


class SettingsError(SoundsearchError):
    """A setting (environment variable or command-line option) holds a value soundsearch cannot use."""


def parse_bytes(text: str | int) -> int:
    """ "600MB", "12GiB", "1.5G", "4096" → bytes (K/M/G/T powers of 1000, KiB/MiB/GiB/TiB of 1024)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 600MB, 12GiB)")
    value, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    power = "KMGT".index(unit) + 1 if unit else 0
    return int(value * (1024 if binary else 1000) ** power)


class Settings(BaseSettings):
    # Empty variables count as unset, as the library's own `os.environ.get(...) or default` reads did.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", env_ignore_empty=True)

    # --- the catalog and its vector index ---
    home: Path | None = Field(default=None, description="catalog folder (default: the per-user data folder)")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL (default: SQLite in the catalog folder)")
    max_index_memory: int | None = Field(
        default=None, ge=1, description="memory the vector index may take, e.g. 600MB, 12GiB (default: RAM / 4)"
    )
    faiss_gpu: bool = Field(
        default=False, description="this FAISS has kernels for this GPU (a conda or source build): use it"
    )
    # --- models ---
    model: str | None = Field(default=None, description="model spec the server loads (default: the catalog's own)")
    threads: int | None = Field(default=None, ge=1, le=1024, description="torch threads (default: one per core)")
    minilm_dir: Path | None = Field(default=None, description="local all-MiniLM-L6-v2 (the mini model's text tower)")
    roberta_tokenizer: Path | None = Field(default=None, description="roberta-base tokenizer for LAION checkpoints")
    spice_dir: Path | None = Field(default=None, description="Stanford CoreNLP jars for the SPICE caption metric")
    # --- the server ---
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="server processes sharing the port")
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

    @field_validator("max_index_memory", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> object:
        return parse_bytes(value) if isinstance(value, str) else value

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

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable of a field, for messages that tell the user what to set."""
        return ENV_PREFIX + field.upper()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def work_slots(self) -> int:
        return self.concurrency or max(2, 2 * (os.cpu_count() or 1))

    def resolved_roots(self) -> list[Path]:
        # Resolved once here so that a symlinked root and a path through it compare equal.
        return [Path(r).expanduser().resolve() for r in self.library_roots]


_configured: Settings | None = None


def settings() -> Settings:
    """This process's settings: the ones `configure` set, else the environment's."""
    return _configured if _configured is not None else _from_environment(_soundsearch_environment())


def configure(**options: object) -> Settings:
    """Lay `options` (command-line values) over the environment; `settings()` returns the result from now on."""
    global _configured
    _configured = _validated(options)
    return _configured


def use(value: Settings | None) -> None:
    """Make `value` this process's settings (a server worker receiving its parent's); None: the environment's."""
    global _configured
    _configured = value


def _soundsearch_environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))


@functools.lru_cache(maxsize=8)
def _from_environment(_environment: tuple[tuple[str, str], ...]) -> Settings:
    return _validated({})  # the argument is the cache key only: pydantic-settings reads os.environ itself


def _validated(options: dict[str, object]) -> Settings:
    try:
        return Settings(**options)  # type: ignore[arg-type]
    except ValidationError as exc:
        # Named by field and variable (it came from one or the other); the value is left out: it may be a key.
        problems = "; ".join(_problem(str(e["loc"][0]) if e["loc"] else "", e["msg"]) for e in exc.errors())
        raise SettingsError(f"invalid setting: {problems}") from None


def _problem(field: str, message: str) -> str:
    return f"{field} ({Settings.env_name(field)}): {message}" if field else message
