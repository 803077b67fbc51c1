"""The web page at ``/`` (``OrthancExplorerEnabled``): static files shipped in the package.

The files of ``dwdaemon/web/static`` are read once when the group is built (at start-up,
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
from dwdaemon.config import Config
from dwdaemon.web.errors import ApiError
from dwdaemon.web.routing import RouteGroup

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


def page_config(config: Config) -> dict[str, Any]:
    """What the page needs to know about this daemon (no secrets)."""
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


class WebPage(RouteGroup):
    """``/``, ``/app/explorer.html``, ``/app/config.json`` and ``/app/{file}`` (none when
    ``OrthancExplorerEnabled`` is false)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        if not config.orthanc_explorer_enabled:
            return
        self.assets = load_assets()
        self.index = self.assets["index.html"]
        self.settings = make_asset(json.dumps(page_config(config), indent=2).encode("utf-8"),
                                   "config.json")
        self.route("/", methods=["GET"], endpoint="webpage.index", handler=self.home)
        self.route(PREFIX + "explorer.html", methods=["GET"], endpoint="webpage.explorer",
                   handler=self.explorer)
        self.route(PREFIX + "config.json", methods=["GET"], endpoint="webpage.config",
                   handler=self.config_json)
        self.route(PREFIX + "<path:name>", methods=["GET"], endpoint="webpage.file",
                   handler=self.static_file)

    def home(self, request: IRequest) -> bytes:
        return answer(request, self.index)

    def explorer(self, request: IRequest) -> bytes:
        return answer(request, self.index)

    def config_json(self, request: IRequest) -> bytes:
        return answer(request, self.settings)

    def static_file(self, request: IRequest, name: str) -> bytes:
        asset = self.assets.get(name)
        if asset is None:
            raise ApiError(404, f"no such file of the web page: {name}")
        return answer(request, asset)
