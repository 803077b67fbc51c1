"""One decorator for every route: remote-access check, authentication, errors, logging."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from dwdaemon.web.auth import REALM, check_basic, client_host, is_loopback
from dwdaemon.web.errors import ApiError, failure_to_response
from dwdaemon.web.observe import mark_route

log = Logger()

if TYPE_CHECKING:
    from dwdaemon.web.context import Context


def check_access(ctx: Context, request: IRequest) -> None:
    """Raise :class:`ApiError` (403 or 401) unless the request may proceed."""
    config = ctx.config
    if not config.remote_access_allowed and not is_loopback(client_host(request)):
        raise ApiError(403, "remote access is disabled (RemoteAccessAllowed is false)")
    if config.authentication_enabled:
        user = check_basic(request.getHeader(b"authorization"), config.registered_users)
        if user is None:
            raise ApiError(401, "authentication required",
                           headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        request.dwdaemon_user = user  # type: ignore[attr-defined]


def access_error(ctx: Context, request: IRequest) -> tuple[int, str, dict[str, str]] | None:
    """``(status, message, headers)`` when :func:`check_access` refuses the request, else None."""
    try:
        check_access(ctx, request)
    except ApiError as exc:
        return exc.status, exc.message, exc.headers
    return None


def guarded(ctx: Context, handler: Callable[..., Any],
            access: Callable[[Context, IRequest], None] = check_access,
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
            access(ctx, request)
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


def route(ctx: Context, path: str, methods: list[str], endpoint: str | None = None,
          **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``handler`` on the context's Klein app for ``path`` and ``methods``.

    The handler receives the request and the URL parameters; it may return bytes or a Deferred
    (firing when the body is complete, for streamed answers). Raise :class:`ApiError` for errors.
    """

    def deco(handler: Callable[..., Any]) -> Callable[..., Any]:
        name = endpoint or f"{handler.__module__}.{handler.__name__}"
        ctx.app.route(path, methods=methods, endpoint=name, **kwargs)(
            guarded(ctx, handler, template=path))
        return handler

    return deco


def install_error_handlers(ctx: Context) -> None:
    """Unknown paths (404) and wrong methods (405) also pass the access checks first."""
    from werkzeug.exceptions import HTTPException, MethodNotAllowed

    @ctx.app.handle_errors(HTTPException)
    def http_errors(request: IRequest, failure: Failure) -> Any:
        try:
            check_access(ctx, request)
        except ApiError as exc:
            return failure_to_response(request, Failure(exc))
        exc = failure.value
        options = ctx.unrouted_options
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
