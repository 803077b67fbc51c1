"""Tests of dwdaemon.client.http against real loopback servers (TLS, proxy, timeouts)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from twisted.internet import defer, protocol, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.client import HTTPConnectionPool, readBody

from dwdaemon.client.http import (
    ClientConfigError,
    Deadline,
    HttpOptions,
    RemoteTimeoutError,
    describe_failure,
    make_agent,
    make_http_client,
    parse_proxy,
    stream_body,
)

from .netsupport import RecordingProxyFactory, make_pki, peer_certificate

_PKI: list = []


def shared_pki():
    """One test PKI per test run (key generation is the slow part)."""
    if not _PKI:
        import tempfile

        _PKI.append(make_pki(tempfile.mkdtemp(prefix="dwd-client-pki-")))
    return _PKI[0]


@dataclass(frozen=True)
class FakeServer:
    """The TLS-related fields of config.RemoteServer."""

    name: str = "remote"
    certificate_file: str | None = None
    certificate_key_file: str | None = None
    certificate_key_password: str | None = None


class Echo(resource.Resource):
    """Answers with the path, the client certificate CN and the request body."""

    isLeaf = True

    def render(self, request):
        cert = peer_certificate(request)
        cn = cert.getSubject().commonName.decode() if cert is not None else "-"
        body = request.content.read()
        request.setHeader(b"content-type", b"text/plain")
        return b"%s %s %s %d" % (request.method, request.path, cn.encode(), len(body))


class Stall(resource.Resource):
    """Sends headers and part of the body, then stalls (or closes, when asked)."""

    isLeaf = True

    def __init__(self, close: bool = False) -> None:
        super().__init__()
        self.close = close

    def render(self, request):
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"1000")
        request.write(b"x" * 100)
        if self.close:
            reactor.callLater(0.05, request.channel.transport.abortConnection)
        return server.NOT_DONE_YET


class Silent(protocol.Protocol):
    """Accepts the connection and never answers."""


class Root(resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.putChild(b"echo", Echo())
        self.putChild(b"stall", Stall())
        self.putChild(b"close", Stall(close=True))


class ClientHttpTests(unittest.TestCase):
    """TLS policy, proxying and whole-exchange deadlines, over loopback."""

    def setUp(self) -> None:
        self.pki = shared_pki()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        site = server.Site(Root())
        self.plain = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.tls = reactor.listenSSL(
            0, site, self.pki.server_options(require_client_cert=True), interface="127.0.0.1"
        )
        self.tls_open = reactor.listenSSL(
            0, site, self.pki.server_options(require_client_cert=False), interface="127.0.0.1"
        )
        self.silent = reactor.listenTCP(
            0, protocol.Factory.forProtocol(Silent), interface="127.0.0.1"
        )
        self.addCleanup(self.plain.stopListening)
        self.addCleanup(self.tls.stopListening)
        self.addCleanup(self.tls_open.stopListening)
        self.addCleanup(self.silent.stopListening)
        self.addCleanup(self.pool.closeCachedConnections)

    def url(self, port, path="/echo", scheme="https", host="127.0.0.1"):
        return f"{scheme}://{host}:{port.getHost().port}{path}"

    def client_server(self, **kw) -> FakeServer:
        return FakeServer(
            certificate_file=self.pki.client_cert_file,
            certificate_key_file=self.pki.client_key_file,
            certificate_key_password=self.pki.client_key_password,
            **kw,
        )

    def client(self, options: HttpOptions, srv: FakeServer | None = None):
        return make_http_client(reactor, options, srv or self.client_server(), self.pool)

    # -- TLS ---------------------------------------------------------------

    @inlineCallbacks
    def test_client_certificate_with_verification(self):
        """Verified server, encrypted client key: the server sees the client CN."""
        http = self.client(HttpOptions(ca_certificates=self.pki.ca_file))
        resp = yield http.get(self.url(self.tls))
        body = yield resp.content()
        self.assertEqual(resp.code, 200)
        self.assertEqual(body, b"GET /echo test client 0")

    @inlineCallbacks
    def test_host_name_localhost(self):
        """Verification by DNS name (SAN localhost) works as well as by IP."""
        http = self.client(HttpOptions(ca_certificates=self.pki.ca_file))
        resp = yield http.get(self.url(self.tls, host="localhost"))
        self.assertEqual((yield resp.content()), b"GET /echo test client 0")

    @inlineCallbacks
    def test_missing_client_certificate_refused(self):
        """A server requiring a client certificate refuses a client without one."""
        http = self.client(HttpOptions(ca_certificates=self.pki.ca_file), FakeServer())
        f = yield self.assertFailure(http.get(self.url(self.tls)), Exception)
        self.assertIn("TLS", describe_failure(_failure(f)))

    @inlineCallbacks
    def test_unverifiable_server_certificate(self):
        """Trusting another CA: the call fails with a verification message."""
        http = self.client(HttpOptions(ca_certificates=self.pki.other_ca_file))
        f = yield self.assertFailure(http.get(self.url(self.tls)), Exception)
        self.assertIn("certificate verification failed", describe_failure(_failure(f)))

    @inlineCallbacks
    def test_platform_trust_rejects_test_ca(self):
        """Without HttpsCACertificates the platform store does not know the test CA."""
        http = self.client(HttpOptions())
        f = yield self.assertFailure(http.get(self.url(self.tls_open)), Exception)
        self.assertIn("certificate verification failed", describe_failure(_failure(f)))

    @inlineCallbacks
    def test_verification_off(self):
        """HttpsVerifyPeers false: an unknown CA is accepted; the client cert still goes."""
        http = self.client(
            HttpOptions(verify_peers=False, ca_certificates=self.pki.other_ca_file)
        )
        resp = yield http.get(self.url(self.tls))
        self.assertEqual((yield resp.content()), b"GET /echo test client 0")

    def test_wrong_key_password(self):
        """A wrong CertificateKeyPassword is a configuration error naming the server."""
        srv = FakeServer(
            name="pacs",
            certificate_file=self.pki.client_cert_file,
            certificate_key_file=self.pki.client_key_file,
            certificate_key_password="nope",
        )
        exc = self.assertRaises(ClientConfigError, make_agent, reactor, HttpOptions(), srv)
        self.assertIn("'pacs'", str(exc))
        self.assertIn("CertificateKeyPassword", str(exc))

    def test_key_not_matching(self):
        srv = FakeServer(
            name="pacs",
            certificate_file=self.pki.client_cert_file,
            certificate_key_file=self.pki.rogue_client_key_file,
        )
        exc = self.assertRaises(ClientConfigError, make_agent, reactor, HttpOptions(), srv)
        self.assertIn("does not match", str(exc))

    # -- proxy ---------------------------------------------------------------

    def start_proxy(self, required_auth=None) -> RecordingProxyFactory:
        factory = RecordingProxyFactory(required_auth)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.proxy_port = port.getHost().port
        return factory

    @inlineCallbacks
    def test_http_through_proxy(self):
        """Plain http goes to the proxy in absolute-URI form; the body gets through."""
        seen = self.start_proxy()
        http = self.client(HttpOptions(proxy=f"127.0.0.1:{self.proxy_port}"))
        url = self.url(self.plain, scheme="http")
        resp = yield http.post(url, data=b"a" * 5000)
        self.assertEqual((yield resp.content()), b"POST /echo test client 5000".replace(
            b"test client", b"-"))
        self.assertEqual(seen.seen, [("POST", url, None)])

    @inlineCallbacks
    def test_https_through_proxy_connect(self):
        """https goes through a CONNECT tunnel, TLS (and client cert) end to end."""
        seen = self.start_proxy()
        http = self.client(
            HttpOptions(
                proxy=f"http://127.0.0.1:{self.proxy_port}", ca_certificates=self.pki.ca_file
            )
        )
        resp = yield http.get(self.url(self.tls))
        self.assertEqual((yield resp.content()), b"GET /echo test client 0")
        self.assertEqual(seen.seen, [("CONNECT", f"127.0.0.1:{self.tls.getHost().port}", None)])

    @inlineCallbacks
    def test_proxy_credentials(self):
        """Credentials in HttpProxy become Proxy-Authorization, for http and CONNECT."""
        auth = b"Basic " + base64.b64encode(b"bob:pw d")
        seen = self.start_proxy(required_auth=auth)
        http = self.client(
            HttpOptions(
                proxy=f"http://bob:pw%20d@127.0.0.1:{self.proxy_port}",
                ca_certificates=self.pki.ca_file,
            )
        )
        resp = yield http.get(self.url(self.plain, scheme="http"))
        self.assertEqual(resp.code, 200)
        yield resp.content()
        resp = yield http.get(self.url(self.tls))
        self.assertEqual((yield resp.content()), b"GET /echo test client 0")
        self.assertEqual([s[2] for s in seen.seen], [auth.decode()] * 2)

    @inlineCallbacks
    def test_proxy_refuses_connect(self):
        """A proxy refusing CONNECT (407) fails the call with the proxy's answer."""
        self.start_proxy(required_auth=b"Basic xyz")
        http = self.client(
            HttpOptions(proxy=f"127.0.0.1:{self.proxy_port}", ca_certificates=self.pki.ca_file)
        )
        f = yield self.assertFailure(http.get(self.url(self.tls)), Exception)
        self.assertIn("proxy refused CONNECT: HTTP/1.1 407", describe_failure(_failure(f)))

    def test_parse_proxy(self):
        self.assertIsNone(parse_proxy(""))
        p = parse_proxy("proxy.example:3128")
        self.assertEqual((p.host, p.port, p.authorization), ("proxy.example", 3128, None))
        p = parse_proxy("http://u:p@h:1")
        self.assertEqual(p.authorization, b"Basic " + base64.b64encode(b"u:p"))
        self.assertRaises(ClientConfigError, parse_proxy, "socks5://h:1")

    # -- deadlines -------------------------------------------------------------

    @inlineCallbacks
    def test_deadline_covers_body(self):
        """Headers arrive, the body stalls: the deadline aborts the whole exchange."""
        http = self.client(HttpOptions())
        deadline = Deadline(reactor, 0.5)
        start = time.monotonic()
        resp = yield deadline.guard(http.get(self.url(self.plain, "/stall", scheme="http")))
        self.assertEqual(resp.code, 200)
        chunks: list[bytes] = []
        yield self.assertFailure(stream_body(resp, chunks.append, deadline), RemoteTimeoutError)
        self.assertLess(time.monotonic() - start, 3)
        self.assertEqual(b"".join(chunks), b"x" * 100)

    @inlineCallbacks
    def test_deadline_before_headers(self):
        """A server that never answers: RemoteTimeoutError, not a hang."""
        http = self.client(HttpOptions())
        deadline = Deadline(reactor, 0.3)
        d = deadline.guard(http.get(self.url(self.silent, "/", scheme="http")))
        f = yield self.assertFailure(d, RemoteTimeoutError)
        self.assertEqual(str(f), "timed out after 0.3 s")

    @inlineCallbacks
    def test_close_mid_body(self):
        """A connection closed mid-body is reported as such."""
        http = self.client(HttpOptions())
        deadline = Deadline(reactor, 5)
        resp = yield deadline.guard(http.get(self.url(self.plain, "/close", scheme="http")))
        failure = []
        d = stream_body(resp, lambda data: None, deadline)
        d.addErrback(failure.append)
        yield d
        deadline.cancel()
        self.assertEqual(
            describe_failure(failure[0]), "connection closed before the answer was complete"
        )

    @inlineCallbacks
    def test_sink_abort(self):
        """A sink raising stops the transfer with its own error."""
        http = self.client(HttpOptions())
        resp = yield http.get(self.url(self.plain, "/stall", scheme="http"))

        def refuse(data):
            raise ValueError("not DICOM")

        yield self.assertFailure(stream_body(resp, refuse), ValueError)

    @inlineCallbacks
    def test_read_body_plain(self):
        agent = make_agent(reactor, HttpOptions(), FakeServer(), self.pool)
        resp = yield agent.request(b"GET", self.url(self.plain, scheme="http").encode())
        self.assertEqual((yield readBody(resp)), b"GET /echo - 0")
        yield defer.succeed(None)


def _failure(exc: BaseException):
    from twisted.python.failure import Failure

    return Failure(exc)
