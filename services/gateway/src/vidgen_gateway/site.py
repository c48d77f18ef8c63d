"""The web page (``web/``, built by ``make web``) served at ``/``.

``VIDGEN_WEB_ENABLED=false`` serves nothing. Otherwise ``/`` answers ``index.html`` from
``VIDGEN_WEB_DIR`` (re-read on each request, so a rebuild shows without a restart) and
``/assets/*`` the hashed files Vite emits (cached for a year). When the page is not built,
``/`` says how to build it.

The page learns from a ``<meta name="vidgen-sign-in" content="dev">`` tag, added here, that
the development sign-in exists; without it, it waits for a token from the app that embeds it.
Its Content-Security-Policy allows scripts, styles and API calls from this origin only, images
and videos from the object store too, and framing by this origin and the CORS origins.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from vidgen_gateway.settings import GatewaySettings

DEV_META = '<meta name="vidgen-sign-in" content="dev">'
NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>vidgen</title></head><body><main><h1>vidgen</h1>
<p>The web page is not built. Run <code>make web</code> (or <code>make run</code>), then reload.
The API is at <a href="/docs">/docs</a>.</p></main></body></html>"""


class _Assets(StaticFiles):
    """Vite's hashed assets: immutable, so cached for a year."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: GatewaySettings) -> str:
    store = _origin(settings.s3.public_endpoint or settings.s3.endpoint)
    ancestors = " ".join(["'self'", *settings.allowed_origins])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data: blob: {store}",
            f"media-src 'self' blob: {store}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {ancestors}",
        ]
    )


def page_html(index: Path, settings: GatewaySettings) -> str:
    """``index.html`` as served: with the development sign-in tag where it exists."""
    html = index.read_text(encoding="utf-8")
    if settings.dev_sign_in:
        html = html.replace("</head>", f"{DEV_META}\n</head>", 1)
    return html


def install_site(app: FastAPI, settings: GatewaySettings) -> None:
    """Serve the page at ``/`` and its assets at ``/assets`` (unless turned off)."""
    if not settings.web_enabled:
        return
    root = Path(settings.web_dir)
    csp = content_security_policy(settings)
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(page_html(index, settings), headers=headers)

    app.mount("/assets", _Assets(directory=root / "assets", check_dir=False), name="assets")
