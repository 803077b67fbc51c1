"""CORS: let browsers on other origins (web viewers such as OHIF) call the API.

Wired once into the whole site (:func:`install`), so every answer -- DICOMweb, WADO-URI, the
core API, errors (401, 404, 405...) included -- carries the same headers:

- a request from an allowed ``Origin`` gets ``Access-Control-Allow-Origin`` (``*`` when any
  origin is allowed without credentials, else the origin itself), ``Access-Control-Expose-
  Headers`` (the headers clients read: ``Warning``, ``ETag``, ``Content-Range``...) and, when
  ``Cors.AllowCredentials``, ``Access-Control-Allow-Credentials: true``;
- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
  answered ``204`` here, before routing and *without* authentication (browsers never send
  credentials in a preflight), with the methods, request headers and ``Access-Control-Max-Age``;
- every answer says ``Vary: Origin`` (caches must not serve one origin's answer to another);
- a request from another origin, or without ``Origin``, is served as if CORS were off.

:class:`CorsPolicy` is the pure decision (no Twisted); :class:`CorsResource` is the glue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Site

from dwdaemon.config import Config, CorsConfig
from dwdaemon.web.auth import client_host, is_loopback

__all__ = [
    "ALLOWED_HEADERS",
    "ALLOWED_METHODS",
    "EXPOSED_HEADERS",
    "CorsPolicy",
    "CorsResource",
    "install",
]

#: Methods a cross-origin page may use (the API's methods).
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
#: Request headers a viewer sends (``Cors.AllowedHeaders`` adds to these).
ALLOWED_HEADERS = ("Authorization", "Accept", "Content-Type", "Range", "If-None-Match",
                   "Cache-Control", "X-Requested-With")
#: Answer headers a client reads (browsers hide the others from scripts).
EXPOSED_HEADERS = ("Warning", "ETag", "Content-Range", "Content-Location", "Location",
                   "Content-Length", "Content-Disposition", "WWW-Authenticate", "Accept-Ranges")


class CorsPolicy:
    """What to answer to a given ``Origin`` (pure logic, built from the ``Cors`` section)."""

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        self.any_origin = "*" in config.allowed_origins
        self.origins = frozenset(config.allowed_origins)
        self.methods = ", ".join(ALLOWED_METHODS)
        extra = [h for h in config.allowed_headers
                 if h.lower() not in {a.lower() for a in ALLOWED_HEADERS}]
        self.request_headers = ", ".join((*ALLOWED_HEADERS, *extra))
        self.exposed = ", ".join(EXPOSED_HEADERS)

    def allow_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``origin``, or None (not allowed)."""
        if not self.config.enabled or not origin:
            return None
        if self.any_origin:
            return origin if self.config.allow_credentials else "*"
        return origin if origin.lower() in self.origins else None

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """Headers for an actual (non-preflight) answer to a request from ``origin``."""
        if not self.config.enabled:
            return []
        headers = [("Vary", "Origin")]
        allowed = self.allow_origin(origin)
        if allowed is None:
            return headers
        headers.append(("Access-Control-Allow-Origin", allowed))
        if self.config.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        headers.append(("Access-Control-Expose-Headers", self.exposed))
        return headers

    def preflight_headers(self, origin: str | None) -> list[tuple[str, str]] | None:
        """Headers answering a preflight from ``origin``; None when it is not allowed."""
        allowed = self.allow_origin(origin)
        if allowed is None:
            return None
        headers = [("Vary", "Origin"), ("Access-Control-Allow-Origin", allowed)]
        if self.config.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        headers += [
            ("Access-Control-Allow-Methods", self.methods),
            ("Access-Control-Allow-Headers", self.request_headers),
            ("Access-Control-Max-Age", str(self.config.max_age)),
        ]
        return headers


def _header(request: IRequest, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _set(request: IRequest, headers: Iterable[tuple[str, str]]) -> None:
    for name, value in headers:
        request.setHeader(name, value)


class CorsResource(Resource):
    """Wraps the site's root resource (a leaf, like Klein's): CORS headers on every answer,
    preflights answered here."""

    isLeaf = True

    def __init__(self, wrapped: IResource, policy: CorsPolicy, remote_access_allowed: bool
                 ) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.policy = policy
        self.remote_access_allowed = remote_access_allowed

    def render(self, request: IRequest) -> Any:
        origin = _header(request, b"origin")
        if request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method"):
            headers = self.policy.preflight_headers(origin)
            # RemoteAccessAllowed stays absolute: the routes answer such clients 403.
            if headers is not None and (self.remote_access_allowed
                                        or is_loopback(client_host(request))):
                request.setResponseCode(204)
                _set(request, headers)
                request.finish()  # no body, and no Content-Length on a 204 (RFC 9110 8.6)
                return NOT_DONE_YET
        # Set before the routes run: error answers only add their own headers.
        _set(request, self.policy.response_headers(origin))
        return self.wrapped.render(request)


def install(site: Site, config: Config) -> None:
    """Wire CORS into ``site`` when ``Cors.Enabled``: its root resource (every route, errors
    and preflights) and its request class (the early ``413`` of ``MaximumRequestSize``)."""
    if not config.cors.enabled:
        return
    policy = CorsPolicy(config.cors)
    site.resource = CorsResource(site.resource, policy, config.remote_access_allowed)
    base = site.requestFactory

    def refusal_headers(request: IRequest) -> list[tuple[str, str]]:
        origin = _header(request, b"origin")
        return [*base.refusal_headers(request), *policy.response_headers(origin)]

    if hasattr(base, "refusal_headers"):
        site.requestFactory = type(base.__name__, (base,), {"refusal_headers": refusal_headers})
