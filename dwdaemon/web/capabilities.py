"""``OPTIONS``: PS3.18 Retrieve Capabilities on the service root and on every resource.

``OPTIONS {Root}`` (and ``OPTIONS /``, ``OPTIONS *``) describe every route of the service;
``OPTIONS`` on a resource describes that resource and answers its ``Allow``. The document is
WADL (``application/vnd.sun.wadl+xml``, the default; ``application/xml`` and ``text/xml``
too) or JSON (``application/json``), built from the route table of the other groups.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from dwdaemon.config import Config
from dwdaemon.dicom.mediatypes import negotiate
from dwdaemon.web import capabilities_model as cm
from dwdaemon.web.errors import ApiError, failure_to_response
from dwdaemon.web.observe import mark_route
from dwdaemon.web.routing import RouteGroup, guarded
from dwdaemon.web.site import route_map
from dwdaemon.web.urls import Urls

_ENDPOINT = "capabilities.options"
_OFFERS = [cm.WADL, "application/json"]
_ALIASES = {"application/xml": cm.WADL, "text/xml": cm.WADL,
            "application/dicom+json": "application/json"}


def _rules(table: Map) -> list[tuple[str, list[str], str]]:
    return [(r.rule, sorted(r.methods or []), str(r.endpoint))
            for r in table.iter_rules() if not str(r.endpoint).startswith("capabilities.")]


def _matching_rules(table: Map, path: str) -> list[tuple[str, list[str], str]]:
    """The rules (other than this module's) that route ``path``, whatever the method."""
    adapter = table.bind("localhost")
    found = []
    methods = set(adapter.allowed_methods(path)) - {"OPTIONS", "HEAD"}
    for method in sorted(methods):
        try:
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except HTTPException:
            continue
        if not str(rule.endpoint).startswith("capabilities."):
            found.append((rule.rule, [method], str(rule.endpoint)))
    return found


class Capabilities(RouteGroup):
    """``OPTIONS`` on ``/``, the DICOMweb root and (through :meth:`unrouted`) every resource
    of the ``described`` groups."""

    def __init__(self, config: Config, urls: Urls, described: Sequence[RouteGroup]) -> None:
        super().__init__(config)
        self.urls = urls
        self.table = route_map(described)
        root = urls.root  # "/dicom-web/"
        handler = guarded(config, self.answer, template="OPTIONS")
        self.app.route("/", methods=["OPTIONS"], endpoint=_ENDPOINT + ".root")(handler)
        self.app.route(root, methods=["OPTIONS"], endpoint=_ENDPOINT + ".service")(handler)
        self.app.route(root.rstrip("/"), methods=["OPTIONS"],
                       endpoint=_ENDPOINT + ".service_")(handler)

    def answer(self, request: IRequest) -> Any:
        """The capabilities document of the service (root) or of the resource at the path."""
        root = self.urls.root
        path = request.path.decode("utf-8", "replace")
        base = self.urls.base_url(request)
        if path in ("/", "*") or path.rstrip("/") + "/" == root:
            prefix = root if path != "/" and path != "*" else "/"
            resources = cm.describe_rules(_rules(self.table), prefix)
            base_path = prefix
        else:
            rules = _matching_rules(self.table, path)
            if not rules:
                raise ApiError(404, "unknown resource")
            resources = cm.describe_rules(rules, "/")
            base_path = "/"
            # This resource only: the concrete path, the templates stay in the document.
        request.setHeader(b"allow", cm.allow_header(resources).encode())
        chosen = negotiate(request.getHeader(b"accept"), _OFFERS, _ALIASES)
        if chosen is None:
            raise ApiError(406, "capabilities are available as "
                                f"{cm.WADL} or application/json")
        if chosen == cm.WADL:
            body = cm.to_wadl(resources, base + base_path)
        else:
            body = json.dumps(cm.to_json(resources, base + base_path)).encode()
        request.setHeader(b"content-type", chosen.encode())
        return body

    def unrouted(self, request: IRequest) -> Any:
        """OPTIONS on a path routed for other methods (called by the 404/405 handler)."""
        mark_route(request, "OPTIONS", __name__)
        try:
            return self.answer(request)
        except ApiError as exc:
            return failure_to_response(request, Failure(exc))
