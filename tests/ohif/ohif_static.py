"""Serve OHIF's built ``dist/`` (single-page app) with a given ``app-config.js``.

Used by the browser test, and by hand::

    python3 tests/ohif/ohif_static.py tests/ohif/node_modules/@ohif/app/dist \\
        etc/ohif/app-config.js 3000

Unknown paths (``/viewer?StudyInstanceUIDs=...``) answer ``index.html``, as OHIF's router needs.
"""

from __future__ import annotations

import os
import sys

from twisted.web import resource, static
from twisted.web.iweb import IRequest
from twisted.web.server import Site

__all__ = ["OhifRoot", "ohif_site"]


class OhifRoot(resource.Resource):
    """``dist/`` files, ``/app-config.js`` from ``config_js``, ``index.html`` for the rest."""

    def __init__(self, dist: str, config_js: bytes) -> None:
        super().__init__()
        self.files = static.File(dist)
        self.index = static.File(os.path.join(dist, "index.html"), defaultType="text/html")
        self.index.isLeaf = True
        self.config_js = config_js

    def getChild(self, path: bytes, request: IRequest) -> resource.IResource:
        if path == b"app-config.js":
            return static.Data(self.config_js, "application/javascript")
        if path and os.path.exists(os.path.join(self.files.path, path.decode("utf-8", "replace"))):
            return self.files.getChild(path, request)
        return self.index

    def render(self, request: IRequest) -> bytes:
        return self.index.render(request)


def ohif_site(dist: str, config_js: bytes) -> Site:
    """A site serving OHIF from ``dist`` with ``config_js`` as its configuration."""
    return Site(OhifRoot(dist, config_js))


def main(argv: list[str]) -> None:
    from twisted.internet import reactor

    dist, config_path, port = argv[1], argv[2], int(argv[3])
    with open(config_path, "rb") as f:
        site = ohif_site(dist, f.read())
    reactor.listenTCP(port, site, interface="127.0.0.1")
    print(f"OHIF on http://127.0.0.1:{port}/ (config {config_path})")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
