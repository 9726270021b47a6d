"""`soundsearch serve`: the HTTP API and the web page, under uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.commands.common import add_catalog_options


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="HTTP API and web page (http://127.0.0.1:8000 by default)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; others need an API key)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--reload", action="store_true", help="restart when the code changes (development)")
    p.add_argument(
        "--workers", type=int, metavar="N", help="server processes sharing the port (default 1; each loads the model)"
    )
    add_catalog_options(p)
    p.add_argument("--model", help="model spec (default: the catalog's model)")
    p.add_argument("--api-key", help="key that mutating endpoints require (default: $SOUNDSEARCH_API_KEY)")
    p.add_argument(
        "--library-root",
        action="append",
        type=Path,
        metavar="DIR",
        help="folder POST /api/index may index (repeatable; default: $SOUNDSEARCH_LIBRARY_ROOTS, else none)",
    )
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="allowed browser origin (repeatable)")
    p.add_argument("--max-upload-mb", type=float, help="largest upload accepted (default 100)")
    p.add_argument(
        "--max-upload-seconds", type=float, help="longest upload accepted once decoded, in seconds (default 1800)"
    )
    p.add_argument("--allow-public", action="store_true", help="listen on a non-loopback address without a key")
    p.set_defaults(run=run_serve)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line values that replace the environment's; unset options keep it."""
    given = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "home": args.home,
        "db_url": args.db_url,
        "model": args.model,
        "api_key": args.api_key,
        "library_roots": args.library_root,
        "cors_origins": args.cors_origin,
        "max_upload_mb": args.max_upload_mb,
        "max_upload_seconds": args.max_upload_seconds,
        "allow_public": args.allow_public or None,
    }
    return {key: value for key, value in given.items() if value is not None}


def run_serve(args: argparse.Namespace) -> int:
    from api.server import serve
    from api.settings import check_bind
    from indexer.settings import configure

    settings = configure(**overrides(args))
    check_bind(settings)
    serve(settings, reload=args.reload, log_level="info")
    return 0
