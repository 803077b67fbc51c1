"""Route groups and the one wrapper of every route: access check, authentication, errors, labels.

A route group (:class:`RouteGroup`) holds its own ``Klein()`` app and registers its bound
methods on it in its constructor, each wrapped by :func:`guarded`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.web.auth import REALM, check_basic, client_host, is_loopback
from dwdaemon.web.errors import ApiError, failure_to_response
from dwdaemon.web.observe import mark_route

log = Logger()


def check_access(config: Config, request: IRequest) -> None:
    """Raise :class:`ApiError` (403 or 401) unless the request may proceed."""
    if not config.remote_access_allowed and not is_loopback(client_host(request)):
        raise ApiError(403, "remote access is disabled (RemoteAccessAllowed is false)")
    if config.authentication_enabled:
        user = check_basic(request.getHeader(b"authorization"), config.registered_users)
        if user is None:
            raise ApiError(401, "authentication required",
                           headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        request.dwdaemon_user = user  # type: ignore[attr-defined]


def access_error(config: Config, request: IRequest
                 ) -> tuple[int, str, dict[str, str]] | None:
    """``(status, message, headers)`` when :func:`check_access` refuses the request, else None."""
    try:
        check_access(config, request)
    except ApiError as exc:
        return exc.status, exc.message, exc.headers
    return None


def guarded(config: Config, handler: Callable[..., Any],
            access: Callable[[Config, IRequest], None] = check_access,
            template: str | None = None) -> Callable[..., Any]:
    """Wrap ``handler(request, **kwargs)`` with access checks and error mapping.

    ``template`` (the route's path) labels the request's metrics and log line.
    """
    module = getattr(handler, "__module__", "")

    @functools.wraps(handler)
    def wrapper(request: IRequest, *args: Any, **kwargs: Any) -> Any:
        if template is not None:
            mark_route(request, template, module)

        def run() -> Any:
            access(config, request)
            return handler(request, *args, **kwargs)

        d = maybeDeferred(run)

        def failed(failure: Failure) -> Any:
            if getattr(request, "finished", False) or getattr(request, "_disconnected", False):
                return None  # the client is gone (or the body was already sent)
            if getattr(request, "startedWriting", False):
                # Too late for an error status: abort the connection so that the client sees
                # a cut body (a clean close could pass for a complete chunked answer).
                log.warn("{uri}: failed after the answer started ({error}); connection cut",
                         uri=request.uri, error=failure.getErrorMessage())
                transport = getattr(getattr(request, "channel", None), "transport", None)
                if transport is not None:
                    transport.abortConnection()
                return None
            return failure_to_response(request, failure)

        d.addErrback(failed)
        return d

    return wrapper


class RouteGroup:
    """A group of routes on its own ``Klein()`` app (subclasses register in ``__init__``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app = Klein()

    def route(self, path: str, methods: list[str], handler: Callable[..., Any],
              endpoint: str | None = None, **kwargs: Any) -> None:
        """Register ``handler`` (guarded) for ``path`` and ``methods``.

        The handler receives the request and the URL parameters; it may return bytes or a
        Deferred (firing when the body is complete, for streamed answers). Raise
        :class:`ApiError` for errors. ``endpoint`` defaults to ``module.name``.
        """
        name = endpoint or f"{handler.__module__}.{handler.__name__}"
        self.app.route(path, methods=methods, endpoint=name, **kwargs)(
            guarded(self.config, handler, template=path))
