"""GET /console: the operator console, static files from ``gateway/console/``.

Off (404, as for any unknown path) unless an admin key is configured: the page holds no
secret, but without the admin API it could do nothing. The page keeps the admin key in
its memory only and sends it as a bearer header, so there is no cookie and no ambient
credential to forge requests with (see docs/console.md).

The files are read once, at import: a fixed set of names is served and nothing from the
request reaches the file system. Every answer carries a strict Content-Security-Policy
(scripts and styles from this origin only, no inline code, no framing, no form posts)
and an ETag; browsers revalidate each load (``no-cache``) and get 304 when unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from gateway.config import Settings

ASSETS_DIR = Path(__file__).resolve().parent.parent / "console"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
))  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate with the ETag: a new release shows at once
}
INDEX = "index.html"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(folder: Path) -> dict[str, Asset]:
    """Every servable file of ``folder`` by name; a file of an unknown type is a packaging
    mistake, refused here rather than served with a guessed type."""
    assets: dict[str, Asset] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None:
            raise ValueError(f"{path}: the console serves only {', '.join(CONTENT_TYPES)} files")
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path.name] = Asset(body, content_type, etag)
    if INDEX not in assets:
        raise ValueError(f"{folder} has no {INDEX}")
    return assets


ASSETS = load_assets(ASSETS_DIR)
router = APIRouter(tags=["console"], include_in_schema=False)


@router.get("/console")
async def console_page(request: Request) -> Response:
    return _serve(request, INDEX)


@router.get("/console/{name}")
async def console_asset(name: str, request: Request) -> Response:
    return _serve(request, name)


def _serve(request: Request, name: str) -> Response:
    settings: Settings = request.app.state.settings
    asset = ASSETS.get(name)
    if settings.admin_key is None or asset is None:
        raise HTTPException(status_code=404, detail="Not Found")
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if asset.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


def _etags(header: str) -> set[str]:
    """The tags of an ``If-None-Match`` header (weak ones compare equal, RFC 9110)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
