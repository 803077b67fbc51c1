"""HTTP(S) machinery for calls to remote DICOMweb servers.

Everything here produces Twisted/treq objects configured from the global
options (``HttpProxy``, ``HttpTimeout``, ``HttpsVerifyPeers``,
``HttpsCACertificates``) and one remote server's options (client certificate
and key, key password, timeout):

- :func:`tls_policy` builds an ``IPolicyForHTTPS`` (CA bundle or platform
  trust, verification switch, client certificate with an encrypted key);
- :class:`RemoteAgent` is an ``IAgent`` that goes direct, through an HTTP proxy
  with absolute-URI requests (``http://``), or through an HTTP ``CONNECT``
  tunnel (``https://``);
- :func:`make_http_client` wraps the agent in a ``treq`` ``HTTPClient``;
- :class:`Deadline` bounds a whole exchange (connect, send, headers *and*
  body) and aborts the connection when it expires.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol as TypingProtocol
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from treq.client import HTTPClient
from twisted.internet._sslverify import VerifyError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    ProxyAgent,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

__all__ = [
    "ClientConfigError",
    "Deadline",
    "HttpOptions",
    "RemoteAgent",
    "RemoteError",
    "RemoteTimeoutError",
    "ServerTLS",
    "describe_failure",
    "make_http_client",
    "parse_proxy",
    "stream_body",
    "tls_policy",
]

#: Default whole-exchange timeout in seconds (Orthanc's ``HttpTimeout`` default).
DEFAULT_TIMEOUT = 60.0
#: Time allowed to establish a TCP connection (bounded by the deadline anyway).
CONNECT_TIMEOUT = 30.0


class ClientConfigError(ValueError):
    """A remote server's or the global HTTP client configuration is unusable."""


class RemoteError(Exception):
    """A remote call failed; the message names the server and the cause."""

    def __init__(self, server: str, cause: str, status: int | None = None) -> None:
        super().__init__(f"remote DICOMweb server {server!r}: {cause}")
        self.server = server
        self.cause = cause
        self.status = status


class RemoteTimeoutError(Exception):
    """The whole exchange with a remote server took longer than allowed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class HttpOptions:
    """Global options applying to every remote call.

    Attributes
    ----------
    proxy:
        ``HttpProxy``: ``host:port`` or ``http://[user:password@]host:port``;
        empty for none.
    timeout:
        ``HttpTimeout`` in seconds for the whole exchange; 0 for none.
    verify_peers:
        ``HttpsVerifyPeers``: verify the server certificate and host name.
    ca_certificates:
        ``HttpsCACertificates``: path of a PEM bundle of trusted CAs; empty to
        use the platform's trust store.
    """

    proxy: str = ""
    timeout: float = DEFAULT_TIMEOUT
    verify_peers: bool = True
    ca_certificates: str = ""

    @classmethod
    def from_config(cls, config: Any) -> HttpOptions:
        """Take ``HttpProxy``, ``HttpTimeout``, ``HttpsVerifyPeers``... from a Config."""
        return cls(
            proxy=config.http_proxy or "",
            timeout=float(config.http_timeout or 0),
            verify_peers=bool(config.https_verify_peers),
            ca_certificates=config.https_ca_certificates or "",
        )


class ServerTLS(TypingProtocol):
    """The fields of a remote server (``config.RemoteServer``) used here."""

    name: str
    certificate_file: str | None
    certificate_key_file: str | None
    certificate_key_password: str | None


@dataclass(frozen=True)
class ProxyAddress:
    """A parsed ``HttpProxy`` value."""

    host: str
    port: int
    authorization: bytes | None  # value of Proxy-Authorization, if any


def parse_proxy(value: str) -> ProxyAddress | None:
    """Parse ``HttpProxy`` (``host:port`` or ``http://[user:pw@]host:port``)."""
    value = (value or "").strip()
    if not value:
        return None
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if parts.scheme.lower() != "http":
        raise ClientConfigError(
            f"HttpProxy: only http:// proxies are supported, got {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ClientConfigError(f"HttpProxy: no host in {value!r}")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ClientConfigError(f"HttpProxy: bad port in {value!r}") from exc
    auth = None
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = b"Basic " + base64.b64encode(cred.encode("utf-8"))
    return ProxyAddress(parts.hostname, port, auth)


# --------------------------------------------------------------------------
# TLS


def _read(path: str, what: str, server: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ClientConfigError(
            f"server {server!r}: cannot read {what} {path!r}: {exc.strerror or exc}"
        ) from exc


def load_ca_bundle(path: str) -> list[Certificate]:
    """Load every certificate of a PEM bundle (``HttpsCACertificates``)."""
    data = _read(path, "HttpsCACertificates", "*")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ClientConfigError(
            f"HttpsCACertificates: {path!r} holds no valid PEM certificate"
        ) from exc
    return [Certificate(crypto.X509.from_cryptography(c)) for c in certs]


def load_client_certificate(server: ServerTLS) -> PrivateCertificate | None:
    """Load a server's TLS client certificate and (possibly encrypted) key."""
    cert_file = server.certificate_file
    key_file = server.certificate_key_file
    if not cert_file:
        if key_file:
            raise ClientConfigError(
                f"server {server.name!r}: CertificateKeyFile given without CertificateFile"
            )
        return None
    # without CertificateKeyFile the key is expected in the certificate file
    key_file = key_file or cert_file
    cert_pem = _read(cert_file, "CertificateFile", server.name)
    key_pem = _read(key_file, "CertificateKeyFile", server.name)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ClientConfigError(
            f"server {server.name!r}: CertificateFile {cert_file!r} is not a PEM certificate"
        ) from exc
    password = server.certificate_key_password
    try:
        key = serialization.load_pem_private_key(
            key_pem, password.encode("utf-8") if password else None
        )
    except TypeError as exc:
        # encrypted key without password, or password given for a clear key
        raise ClientConfigError(
            f"server {server.name!r}: CertificateKeyFile {key_file!r}: {exc}"
        ) from exc
    except ValueError as exc:
        raise ClientConfigError(
            f"server {server.name!r}: cannot load CertificateKeyFile {key_file!r}"
            " (wrong CertificateKeyPassword or not a PEM key)"
        ) from exc
    pkey = crypto.PKey.from_cryptography_key(key)  # type: ignore[arg-type]
    x509cert = crypto.X509.from_cryptography(cert)
    try:
        return PrivateCertificate.fromCertificateAndKeyPair(
            Certificate(x509cert), KeyPair(pkey)
        )
    except VerifyError as exc:
        raise ClientConfigError(
            f"server {server.name!r}: CertificateKeyFile does not match CertificateFile"
        ) from exc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    """TLS client connections that do not verify the peer (verify switch off)."""

    def __init__(self, hostname: str, context: SSL.Context) -> None:
        self._hostname = hostname
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self._context, None)
        conn.set_app_data(tlsProtocol)
        if self._hostname and not _is_ip(self._hostname):
            conn.set_tlsext_host_name(self._hostname.encode("idna"))
        conn.set_connect_state()
        return conn


@implementer(IPolicyForHTTPS)
class ClientTLSPolicy:
    """``IPolicyForHTTPS`` honouring the verify switch, CA bundle and client cert."""

    def __init__(
        self,
        verify: bool,
        trust_root: Any = None,
        client_certificate: PrivateCertificate | None = None,
    ) -> None:
        self.verify = verify
        self.client_certificate = client_certificate
        self._trust_root = trust_root
        self._unverified_context: SSL.Context | None = None
        if not verify:
            kwargs: dict[str, Any] = {"verify": False}
            if client_certificate is not None:
                kwargs["privateKey"] = client_certificate.privateKey.original
                kwargs["certificate"] = client_certificate.original
            self._unverified_context = CertificateOptions(**kwargs).getContext()

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """Return the connection creator for ``hostname:port``."""
        host = hostname.decode("ascii") if isinstance(hostname, bytes) else hostname
        if self._unverified_context is not None:
            return _UnverifiedCreator(host, self._unverified_context)
        return optionsForClientTLS(
            host,
            trustRoot=self._trust_root if self._trust_root is not None else platformTrust(),
            clientCertificate=self.client_certificate,
        )


def tls_policy(options: HttpOptions, server: ServerTLS) -> ClientTLSPolicy:
    """Build the TLS policy for one remote server (files are read once, here)."""
    trust_root = None
    if options.verify_peers and options.ca_certificates:
        trust_root = trustRootFromCertificates(load_ca_bundle(options.ca_certificates))
    return ClientTLSPolicy(
        options.verify_peers, trust_root, load_client_certificate(server)
    )


# --------------------------------------------------------------------------
# Proxy: HTTP CONNECT tunnel for https


class TunnelError(Exception):
    """The HTTP proxy refused or broke the CONNECT tunnel."""


class _TunnelProtocol(Protocol):
    """Sends ``CONNECT host:port``, then hands the connection to the real protocol."""

    def __init__(
        self,
        target: bytes,
        authorization: bytes | None,
        factory: Factory,
        ready: Deferred,
    ) -> None:
        self._target = target
        self._authorization = authorization
        self._factory = factory
        self._ready = ready
        self._buffer = b""
        self._inner: Protocol | None = None

    def connectionMade(self) -> None:
        lines = [
            b"CONNECT " + self._target + b" HTTP/1.1",
            b"Host: " + self._target,
        ]
        if self._authorization:
            lines.append(b"Proxy-Authorization: " + self._authorization)
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 65536:
                self._fail("proxy sent an oversized CONNECT answer")
            return
        head, rest = self._buffer[:end], self._buffer[end + 4 :]
        self._buffer = b""
        status_line = head.split(b"\r\n", 1)[0]
        fields = status_line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].startswith(b"2"):
            self._fail(
                "proxy refused CONNECT: " + status_line.decode("latin-1", "replace")
            )
            return
        inner = self._factory.buildProtocol(self.transport.getPeer())
        if inner is None:
            self._fail("connection refused by protocol factory")
            return
        self._inner = inner
        inner.makeConnection(self.transport)
        ready, self._ready = self._ready, None
        ready.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _fail(self, why: str) -> None:
        ready, self._ready = self._ready, None
        self.transport.abortConnection()
        if ready is not None:
            ready.errback(TunnelError(why))

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:
        if self._inner is not None:
            self._inner.connectionLost(reason)
        elif self._ready is not None:
            ready, self._ready = self._ready, None
            ready.errback(TunnelError(f"proxy closed the connection: {reason.getErrorMessage()}"))


@implementer(IStreamClientEndpoint)
class ConnectTunnelEndpoint:
    """Endpoint reaching ``host:port`` through an HTTP proxy's ``CONNECT``."""

    def __init__(self, reactor: Any, proxy: ProxyAddress, host: bytes, port: int) -> None:
        self._reactor = reactor
        self._proxy = proxy
        self._target = host + b":" + str(port).encode("ascii")

    def connect(self, protocolFactory: Factory) -> Deferred:
        proxy_endpoint = HostnameEndpoint(
            self._reactor, self._proxy.host, self._proxy.port, timeout=CONNECT_TIMEOUT
        )
        tunnel: list[_TunnelProtocol] = []

        def cancel(d: Deferred) -> None:
            connecting.cancel()
            if tunnel and tunnel[0].transport is not None:
                tunnel[0].transport.abortConnection()

        ready: Deferred = Deferred(cancel)

        def build(addr: Any) -> _TunnelProtocol:
            proto = _TunnelProtocol(
                self._target, self._proxy.authorization, protocolFactory, ready
            )
            tunnel.append(proto)
            return proto

        connecting = proxy_endpoint.connect(Factory.forProtocol(lambda: build(None)))

        def connect_failed(f: Failure) -> None:
            if not ready.called:
                ready.errback(f)

        connecting.addErrback(connect_failed)
        return ready


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """Endpoints for direct (or CONNECT-tunnelled) connections, TLS for https."""

    def __init__(self, reactor: Any, policy: IPolicyForHTTPS, proxy: ProxyAddress | None):
        self._reactor = reactor
        self._policy = policy
        self._proxy = proxy

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host
        if self._proxy is not None and uri.scheme == b"https":
            inner: IStreamClientEndpoint = ConnectTunnelEndpoint(
                self._reactor, self._proxy, host, uri.port
            )
        else:
            inner = HostnameEndpoint(
                self._reactor, host, uri.port, timeout=CONNECT_TIMEOUT
            )
        if uri.scheme == b"https":
            creator = self._policy.creatorForNetloc(host, uri.port)
            return wrapClientTLS(creator, inner)
        if uri.scheme != b"http":
            raise ValueError(f"unsupported URL scheme {uri.scheme!r}")
        return inner


@implementer(IAgent)
class RemoteAgent:
    """An ``IAgent`` going direct or through ``HttpProxy``.

    Plain ``http://`` requests go to the proxy in absolute-URI form (with
    ``Proxy-Authorization`` when the proxy URL carries credentials);
    ``https://`` requests are tunnelled with ``CONNECT`` and TLS is negotiated
    end to end with the remote server.
    """

    def __init__(
        self,
        reactor: Any,
        policy: IPolicyForHTTPS,
        proxy: ProxyAddress | None = None,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        self._proxy = proxy
        self._agent = Agent.usingEndpointFactory(
            reactor, _EndpointFactory(reactor, policy, proxy), pool=pool
        )
        self._proxy_agent: IAgent | None = None
        if proxy is not None:
            endpoint = HostnameEndpoint(reactor, proxy.host, proxy.port, timeout=CONNECT_TIMEOUT)
            self._proxy_agent = ProxyAgent(endpoint, reactor=reactor, pool=pool)

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: Any = None,
    ) -> Deferred:
        if self._proxy_agent is not None and uri.lower().startswith(b"http:"):
            if self._proxy is not None and self._proxy.authorization:
                headers = headers.copy() if headers is not None else Headers()
                headers.setRawHeaders(b"Proxy-Authorization", [self._proxy.authorization])
            return self._proxy_agent.request(method, uri, headers, bodyProducer)
        return self._agent.request(method, uri, headers, bodyProducer)


def make_agent(
    reactor: Any,
    options: HttpOptions,
    server: ServerTLS,
    pool: HTTPConnectionPool | None = None,
) -> RemoteAgent:
    """Build the agent for one remote server (reads its certificate files)."""
    if pool is None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        pool.cachedConnectionTimeout = 30
    return RemoteAgent(reactor, tls_policy(options, server), parse_proxy(options.proxy), pool)


def make_http_client(
    reactor: Any,
    options: HttpOptions,
    server: ServerTLS,
    pool: HTTPConnectionPool | None = None,
) -> HTTPClient:
    """Return a treq ``HTTPClient`` for one remote server."""
    return HTTPClient(make_agent(reactor, options, server, pool))


# --------------------------------------------------------------------------
# Whole-exchange deadline and body streaming


def _abort_transport(transport: Any) -> None:
    """Abort the TCP/TLS connection behind a response body's transport."""
    producer = getattr(transport, "_producer", None)  # TransportProxyProducer
    abort = getattr(producer, "abortConnection", None)
    if abort is not None:
        abort()
    elif transport is not None:
        transport.stopProducing()


class Deadline:
    """A time limit for a whole exchange (request, headers and body).

    ``guard(d)`` makes ``d`` fail with :class:`RemoteTimeoutError` when the limit
    passes (cancelling it, which aborts a pending agent request);
    :func:`stream_body` registers the body being read so that the connection
    is aborted too.  ``seconds <= 0`` disables the limit.
    """

    def __init__(self, reactor: Any, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._pending: set[Deferred] = set()
        #: Bodies being received under this deadline (aborted when it expires).
        self.bodies: set[_BodyStreamer] = set()
        self._call = reactor.callLater(seconds, self._expire) if seconds and seconds > 0 else None

    def _expire(self) -> None:
        self._call = None
        self.expired = True
        for body in list(self.bodies):
            body.abort(RemoteTimeoutError(self.seconds))
        for d in list(self._pending):
            d.cancel()

    def guard(self, d: Deferred) -> Deferred:
        """Wrap ``d``: fail with :class:`RemoteTimeoutError` once expired.

        Cancelling the returned Deferred cancels ``d`` and fails with
        ``CancelledError`` (whatever error the cancelled operation reports).
        """
        state = {"cancelled": False}

        def cancel(outer: Deferred) -> None:
            state["cancelled"] = True
            d.cancel()

        outer: Deferred = Deferred(cancel)
        self._pending.add(outer)

        def relay(result: Any) -> None:
            self._pending.discard(outer)
            if outer.called:
                return None
            if isinstance(result, Failure):
                if self.expired:
                    result = Failure(RemoteTimeoutError(self.seconds))
                elif state["cancelled"]:
                    result = Failure(CancelledError())
                outer.errback(result)
            else:
                outer.callback(result)
            return None

        d.addBoth(relay)
        if self.expired:
            outer.cancel()
        return outer

    def cancel(self) -> None:
        """Stop the timer (the exchange finished)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class _BodyStreamer(Protocol):
    """Delivers body bytes to a callback; fails on truncation or abort."""

    def __init__(self, on_data: Callable[[bytes], Any], done: Deferred, flow: Any = None) -> None:
        self._on_data = on_data
        self._done: Deferred | None = done
        self.error: BaseException | None = None  # why the transfer stops (set once)
        self._flow = flow
        self.received = 0

    def connectionMade(self) -> None:
        if self._flow is not None:
            self._flow.producer = self.transport

    def dataReceived(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.received += len(data)
        try:
            self._on_data(data)
        except BaseException as exc:  # the sink refused: stop reading
            self.abort(exc)

    def abort(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None:
            _abort_transport(self.transport)

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:
        if self._flow is not None:
            self._flow.producer = None
        done, self._done = self._done, None
        if done is None or done.called:
            return
        if self.error is not None:
            done.errback(Failure(self.error))
        elif reason.check(ResponseDone):
            done.callback(self.received)
        elif reason.check(PotentialDataLoss):
            # no Content-Length and not chunked: the close marks the end
            done.callback(self.received)
        else:
            done.errback(reason)


def stream_body(
    response: Any,
    on_data: Callable[[bytes], Any],
    deadline: Deadline | None = None,
    flow: Any = None,
) -> Deferred:
    """Deliver a response's body to ``on_data``; fire with the byte count.

    ``on_data`` may raise to abort the transfer (the Deferred fails with that
    exception).  Fails with :class:`RemoteTimeoutError` when ``deadline`` expires,
    or with the ``ResponseFailed`` of a connection closed mid-body.
    Cancelling the Deferred aborts the connection.  When given, ``flow.producer``
    is set to the body's transport (to pause/resume the remote).
    """
    holder: list[_BodyStreamer] = []
    done: Deferred = Deferred(lambda d: holder[0].abort(CancelledError()))
    streamer = _BodyStreamer(on_data, done, flow)
    holder.append(streamer)
    if deadline is not None:
        if deadline.expired:
            streamer.error = RemoteTimeoutError(deadline.seconds)
        deadline.bodies.add(streamer)
        done.addBoth(lambda r: (deadline.bodies.discard(streamer), r)[1])
    original = getattr(response, "original", response)
    original.deliverBody(streamer)
    if streamer.error is not None and streamer.transport is not None:
        _abort_transport(streamer.transport)
    return done


def describe_failure(failure: Failure) -> str:
    """A short human cause for a failed remote exchange."""
    exc = failure.value
    if isinstance(exc, RemoteTimeoutError):
        return str(exc)
    if isinstance(exc, (RemoteError, ClientConfigError, TunnelError)):
        return str(exc)
    reasons = getattr(exc, "reasons", None)  # ResponseFailed / RequestTransmissionFailed
    if reasons:
        inner = [describe_failure(r) for r in reasons if isinstance(r, Failure)]
        text = "; ".join(i for i in inner if i)
        name = type(exc).__name__
        if name == "ResponseFailed" and any(
            r.check(ConnectionLost, ConnectionDone) for r in reasons if isinstance(r, Failure)
        ):
            return "connection closed before the answer was complete"
        return text or name
    if isinstance(exc, SSL.Error):
        detail = _ssl_error_text(exc)
        if "certificate verify failed" in detail:
            return f"TLS certificate verification failed ({detail})"
        return f"TLS error ({detail})"
    if type(exc).__name__ == "VerificationError":  # service_identity host name mismatch
        return f"TLS certificate does not match the host name ({exc})"
    if isinstance(exc, CancelledError):
        return "cancelled"
    text = failure.getErrorMessage()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ssl_error_text(exc: SSL.Error) -> str:
    parts: list[str] = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return ", ".join(parts) or str(exc)


def failure_to_remote_error(server: str, failure: Failure) -> RemoteError:
    """Wrap a failed exchange as a :class:`RemoteError` naming ``server``."""
    if isinstance(failure.value, RemoteError):
        return failure.value
    return RemoteError(server, describe_failure(failure))
