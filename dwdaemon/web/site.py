"""The site's root resource: one route table over the route groups, each with its own app.

:class:`Routes` matches a request against the rules of every group (one werkzeug map, so the
precedence between routes is the map's, whichever group a route belongs to) and lets the
matching group's Klein resource answer. A path no group routes, or routes for other methods,
is answered by a route-less app with the shared error handler: access checks first, then
``OPTIONS`` (capabilities), else a JSON 404 or 405.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map

from dwdaemon.config import Config
from dwdaemon.web.bodies import limited_request_class
from dwdaemon.web.cors import install as install_cors
from dwdaemon.web.errors import ApiError, failure_to_response
from dwdaemon.web.limits import HttpLimits, LimitedChannel
from dwdaemon.web.metrics import Metrics
from dwdaemon.web.observe import Observer, observed_request_class
from dwdaemon.web.routing import RouteGroup, access_error, check_access


def route_map(groups: Sequence[RouteGroup]) -> Map:
    """One werkzeug map holding a copy of every rule of ``groups`` (endpoints are unique)."""
    table = Map()
    seen: set[str] = set()
    for group in groups:
        for rule in group.app.url_map.iter_rules():
            if rule.endpoint in seen:
                raise ValueError(f"endpoint {rule.endpoint!r} is routed twice")
            seen.add(rule.endpoint)
            table.add(rule.empty())
    return table


def error_app(config: Config, table: Map, options: Callable[[IRequest], Any] | None) -> Klein:
    """A Klein app without endpoints over ``table``: it only answers 404, 405 and OPTIONS."""
    app = Klein()
    for rule in table.iter_rules():
        app.url_map.add(rule.empty())

    @app.handle_errors(HTTPException)
    def http_errors(request: IRequest, failure: Failure) -> Any:
        try:
            check_access(config, request)
        except ApiError as exc:
            return failure_to_response(request, Failure(exc))
        exc = failure.value
        if request.method == b"OPTIONS" and options is not None:
            return options(request)  # capabilities of a routed path (dwdaemon.web.capabilities)
        if request.method == b"OPTIONS" and isinstance(exc, MethodNotAllowed):
            # OPTIONS on a known path: the methods it allows, no body.
            methods = set(exc.valid_methods or []) | {"OPTIONS"}
            request.setResponseCode(204)
            request.setHeader("Allow", ", ".join(sorted(methods)))
            return b""
        if isinstance(exc, MethodNotAllowed) and set(exc.valid_methods or []) <= {"OPTIONS"}:
            # a path that only answers OPTIONS (e.g. "/" with the web page off) is no
            # resource to GET or POST: 404, as for an unknown path
            return failure_to_response(request, Failure(ApiError(404, "unknown resource")))
        return failure_to_response(request, failure)

    return app


class Routes(Resource):
    """The root resource: hands each request to the route group whose rule matches it."""

    isLeaf = True

    def __init__(self, config: Config, groups: Sequence[RouteGroup],
                 options: Callable[[IRequest], Any] | None = None) -> None:
        super().__init__()
        self.groups = tuple(groups)
        self.table = route_map(self.groups)
        self._by_endpoint: dict[str, IResource] = {}
        for group in self.groups:
            resource = group.app.resource()
            for rule in group.app.url_map.iter_rules():
                self._by_endpoint[rule.endpoint] = resource
        self._errors = error_app(config, self.table, options).resource()

    def render(self, request: IRequest) -> Any:
        """Let the matching group answer; else the error app (404, 405, OPTIONS, bad URL)."""
        path = b"/".join(request.postpath)
        if not path.startswith(b"/"):
            path = b"/" + path
        try:
            adapter = self.table.bind("localhost", path_info=path.decode("utf-8"),
                                      default_method=request.method.decode("utf-8"))
            rule, _ = adapter.match(return_rule=True)
        except (HTTPException, UnicodeDecodeError):
            rule = None  # answered outside this handler: no chained exception in its Failure
        if rule is None:
            return self._errors.render(request)
        return self._by_endpoint[rule.endpoint].render(request)


def make_site(config: Config, routes: Routes, metrics: Metrics, limits: HttpLimits) -> Site:
    """The HTTP site over ``routes``: body limits, request ids and metrics, connection limits,
    early access checks and CORS."""
    # no route takes an HTML form: Twisted need not parse the Content-Type of every POST
    site = Site(routes, parsePOSTFormSubmission=False)
    mb = 1024 * 1024
    site.requestFactory = observed_request_class(
        limited_request_class(config.maximum_request_size * mb, config.maximum_upload_size * mb,
                              upload_paths=(config.dicomweb.root + "studies", "/instances")),
        Observer(metrics))
    site.displayTracebacks = False
    site.log = lambda request: None  # the access line is dwdaemon.web.observe's (request id)
    site.protocol = LimitedChannel
    site.dw_limits = limits
    site.dw_access_check = lambda request: access_error(config, request)
    install_cors(site, config)
    return site
