"""The web page at ``/`` (``OrthancExplorerEnabled``): static files shipped in the package.

The files of ``dwdaemon/web/static`` are read once when the routes are installed (at start-up,
before the reactor runs) and answered from memory with an ``ETag``; ``/app/config.json`` tells
the page where the APIs are. Every route is guarded like the API (remote access, Basic auth).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from dataclasses import dataclass
from importlib import resources
from typing import Any

from twisted.web.iweb import IRequest

import dwdaemon
from dwdaemon.web.context import Context
from dwdaemon.web.errors import ApiError

#: Where the page's files are served (Orthanc Explorer's prefix).
PREFIX = "/app/"
#: Content types of the files we ship (the platform's table may lack some).
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
#: The page loads nothing from elsewhere; images come from our own API or blob: URLs.
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class Asset:
    """One file answered from memory."""

    body: bytes
    content_type: str
    etag: str


def make_asset(body: bytes, name: str) -> Asset:
    """An :class:`Asset` with its content type (from the name) and a strong ETag."""
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    ctype = TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body, ctype, '"' + hashlib.sha1(body).hexdigest()[:20] + '"')


def load_assets() -> dict[str, Asset]:
    """Every file under ``dwdaemon/web/static`` by its relative path (``js/app.js``)."""
    out: dict[str, Asset] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith(".") or child.name == "__pycache__":
                continue
            if child.is_dir():
                walk(child, prefix + child.name + "/")
            else:
                out[prefix + child.name] = make_asset(child.read_bytes(), child.name)

    walk(resources.files("dwdaemon.web") / "static", "")
    return out


def page_config(ctx: Context) -> dict[str, Any]:
    """What the page needs to know about this daemon (no secrets)."""
    config = ctx.config
    return {
        "Name": config.name,
        "Version": dwdaemon.__version__,
        "DicomWebEnabled": config.dicomweb.enable,
        "DicomWebRoot": config.dicomweb.root,
        "WadoUriEnabled": config.dicomweb.enable and config.dicomweb.enable_wado,
        "WadoRoot": config.dicomweb.wado_root,
        "ViewerUrl": config.explorer_viewer_url,
        "AuthenticationEnabled": config.authentication_enabled,
    }


def answer(request: IRequest, asset: Asset) -> bytes:
    """Send ``asset`` (or 304 when the client has it), never cached without revalidation."""
    request.setHeader("ETag", asset.etag)
    request.setHeader("Cache-Control", "no-cache")
    request.setHeader("X-Content-Type-Options", "nosniff")
    if asset.content_type.startswith("text/html"):
        request.setHeader("Content-Security-Policy", CSP)
        request.setHeader("X-Frame-Options", "DENY")
        request.setHeader("Referrer-Policy", "no-referrer")
    tags = request.getHeader(b"if-none-match")
    if tags is not None and asset.etag.encode() in [t.strip() for t in tags.split(b",")]:
        request.setResponseCode(304)
        return b""
    request.setHeader("Content-Type", asset.content_type)
    request.setHeader("Content-Length", str(len(asset.body)))
    return asset.body


def install(app: Any, ctx: Context) -> None:
    """Register ``/``, ``/app/explorer.html``, ``/app/config.json`` and ``/app/{file}``."""
    if not ctx.config.orthanc_explorer_enabled:
        return
    assets = load_assets()
    index = assets["index.html"]
    settings = make_asset(json.dumps(page_config(ctx), indent=2).encode("utf-8"), "config.json")

    @ctx.route("/", methods=["GET"], endpoint="webpage.index")
    def home(request: IRequest) -> bytes:
        return answer(request, index)

    @ctx.route(PREFIX + "explorer.html", methods=["GET"], endpoint="webpage.explorer")
    def explorer(request: IRequest) -> bytes:
        return answer(request, index)

    @ctx.route(PREFIX + "config.json", methods=["GET"], endpoint="webpage.config")
    def config_json(request: IRequest) -> bytes:
        return answer(request, settings)

    @ctx.route(PREFIX + "<path:name>", methods=["GET"], endpoint="webpage.file")
    def static_file(request: IRequest, name: str) -> bytes:
        asset = assets.get(name)
        if asset is None:
            raise ApiError(404, f"no such file of the web page: {name}")
        return answer(request, asset)
