"""Test helpers for the client: a test PKI, loopback TLS servers, a recording proxy."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet import protocol, reactor
from twisted.internet.ssl import Certificate, CertificateOptions
from twisted.web import http, proxy

KEY_PASSWORD = "s3cret-key-pw"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: Any,
    issuer: str,
    issuer_key: Any,
    *,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any, password: str | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
    )


@dataclass
class TestPKI:
    """Files of a test CA, a server certificate and a client certificate."""

    directory: str
    ca_file: str
    server_cert: x509.Certificate
    server_key: Any
    ca_cert: x509.Certificate
    client_cert_file: str
    client_key_file: str  # encrypted with KEY_PASSWORD
    client_key_password: str
    other_ca_file: str  # a CA that signed nothing here
    rogue_client_cert_file: str  # client certificate signed by the other CA
    rogue_client_key_file: str  # not encrypted

    def server_options(self, require_client_cert: bool = True) -> CertificateOptions:
        """Server-side TLS options; when asked, a client certificate from the CA is required."""
        return CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(self.server_key),
            certificate=crypto.X509.from_cryptography(self.server_cert),
            verify=require_client_cert,
            caCerts=[crypto.X509.from_cryptography(self.ca_cert)] if require_client_cert else None,
            requireCertificate=require_client_cert,
        )


def make_pki(directory: str) -> TestPKI:
    """Generate a CA, server and client certificates into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    ca_key = _key()
    ca = _cert("dwdaemon test CA", ca_key, "dwdaemon test CA", ca_key, ca=True)
    server_key = _key()
    server = _cert("localhost", server_key, "dwdaemon test CA", ca_key, server=True)
    client_key = _key()
    client = _cert("test client", client_key, "dwdaemon test CA", ca_key, client=True)
    other_key = _key()
    other = _cert("other CA", other_key, "other CA", other_key, ca=True)
    rogue_key = _key()
    rogue = _cert("rogue client", rogue_key, "other CA", other_key, client=True)

    def write(name: str, data: bytes) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    return TestPKI(
        directory=directory,
        ca_file=write("ca.pem", _pem(ca)),
        server_cert=server,
        server_key=server_key,
        ca_cert=ca,
        client_cert_file=write("client.crt", _pem(client)),
        client_key_file=write("client.key", _key_pem(client_key, KEY_PASSWORD)),
        client_key_password=KEY_PASSWORD,
        other_ca_file=write("other-ca.pem", _pem(other)),
        rogue_client_cert_file=write("rogue.crt", _pem(rogue)),
        rogue_client_key_file=write("rogue.key", _key_pem(rogue_key)),
    )


def peer_certificate(request: http.Request) -> Certificate | None:
    """The TLS client certificate presented on a twisted.web request, if any."""
    transport = request.channel.transport
    try:
        return Certificate.peerFromTransport(transport)
    except Exception:
        return None


# --------------------------------------------------------------------------
# A small recording HTTP proxy: absolute-URI requests and CONNECT tunnels


class _Relay(protocol.Protocol):
    """One side of a CONNECT tunnel: forwards bytes to ``peer``."""

    peer: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.peer is not None:
            self.peer.loseConnection()
            self.peer = None


class RecordingProxyRequest(proxy.ProxyRequest):
    """Records each request, handles CONNECT tunnels and absolute URIs."""

    def process(self) -> None:
        factory = self.channel.factory
        auth = self.getHeader(b"proxy-authorization")
        factory.seen.append(
            (self.method.decode(), self.uri.decode(), auth.decode() if auth else None)
        )
        if factory.required_auth is not None and auth != factory.required_auth:
            self.setResponseCode(407)
            self.setHeader(b"proxy-authenticate", b'Basic realm="test"')
            self.setHeader(b"content-length", b"0")
            self.finish()
            return
        if self.method == b"CONNECT":
            self._tunnel()
            return
        # the proxy re-sends the body with a Content-Length, not chunked
        self.requestHeaders.removeHeader(b"transfer-encoding")
        self.requestHeaders.removeHeader(b"proxy-authorization")
        self.content.seek(0, 2)
        self.requestHeaders.setRawHeaders(b"content-length", [str(self.content.tell()).encode()])
        self.content.seek(0)
        # twisted.web.proxy only knows "http" URLs with explicit handling of ports
        parts = urlsplit(self.uri.decode())
        if parts.scheme != "http":
            self.setResponseCode(400)
            self.finish()
            return
        super().process()

    def _tunnel(self) -> None:
        host, _, port = self.uri.decode().rpartition(":")
        channel = self.channel
        client_transport = channel.transport
        channel.setTimeout(None)

        outbound = _Relay()
        inbound = _Relay()

        class _Connector(protocol.ClientFactory):
            def buildProtocol(self, addr: Any) -> _Relay:
                return outbound

            def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
                client_transport.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                client_transport.loseConnection()

        def connected() -> None:
            outbound.peer = client_transport
            inbound.peer = outbound.transport
            client_transport.protocol = inbound  # take the socket away from HTTPChannel
            client_transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            client_transport.resumeProducing()

        original_made = outbound.connectionMade
        outbound.connectionMade = lambda: (original_made(), connected())  # type: ignore[method-assign]
        reactor.connectTCP(host.strip("[]"), int(port), _Connector())


class _RecordingProxy(proxy.Proxy):
    requestFactory = RecordingProxyRequest


class RecordingProxyFactory(http.HTTPFactory):
    """Factory of the recording proxy; ``seen`` lists (method, uri, auth)."""

    protocol = _RecordingProxy

    def __init__(self, required_auth: bytes | None = None) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str | None]] = []
        self.required_auth = required_auth
