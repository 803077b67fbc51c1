"""Authentication, the remote-access switch and HTTPS, as clients meet them."""

from __future__ import annotations

import base64
import datetime
import json
import os

import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from treq.client import HTTPClient
from twisted.internet import reactor, ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseNeverReceived,
)

from dwdaemon.tap import build_daemon, listen_description
from dwdaemon.web.auth import check_basic, is_loopback
from tests.support import make_config, read, start_daemon, testdata


def basic(user: str, password: str) -> dict[str, list[bytes]]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": [f"Basic {token}".encode()]}


class AuthenticationTests(TestCase):
    def setUp(self) -> None:
        self.daemon = start_daemon(self, authentication_enabled=True,
                                   registered_users={"alice": "s3cret", "bob": "pw:with:colons"})

    @inlineCallbacks
    def test_without_and_with_wrong_credentials(self) -> None:
        for headers in (None, basic("alice", "wrong"), basic("mallory", "s3cret"),
                        {"Authorization": [b"Bearer abc"]}, {"Authorization": [b"Basic !!"]}):
            for method, path in (("GET", "/system"), ("GET", "/no/such/route"),
                                 ("POST", "/instances"), ("GET", "/dicom-web/studies")):
                response, body = yield self.daemon.request(method, path, headers=headers)
                self.assertEqual(response.code, 401, (headers, path))
                self.assertEqual(response.headers.getRawHeaders("www-authenticate"),
                                 ['Basic realm="dwdaemon"'])
                self.assertEqual(json.loads(body)["HttpStatus"], 401)

    @inlineCallbacks
    def test_right_credentials(self) -> None:
        response, body = yield self.daemon.request("GET", "/system",
                                                   headers=basic("alice", "s3cret"))
        self.assertEqual(response.code, 200)
        response, body = yield self.daemon.request(
            "POST", "/instances", data=read(testdata("CT_small.dcm")),
            headers=basic("bob", "pw:with:colons"))
        self.assertEqual(response.code, 200)
        response, _ = yield self.daemon.request("GET", "/no/such/route",
                                                headers=basic("alice", "s3cret"))
        self.assertEqual(response.code, 404)

    def test_check_basic(self) -> None:
        users = {"u": "p"}
        self.assertEqual(check_basic(b"Basic " + base64.b64encode(b"u:p"), users), "u")
        self.assertEqual(check_basic(b"basic " + base64.b64encode(b"u:p"), users), "u")
        self.assertIsNone(check_basic(b"Basic " + base64.b64encode(b"u:x"), users))
        self.assertIsNone(check_basic(b"Basic " + base64.b64encode(b"up"), users))
        self.assertIsNone(check_basic(None, users))


def _remote_request_class(base: type, host: str) -> type:
    class FromElsewhere(base):  # type: ignore[misc, valid-type]
        def getClientAddress(self):
            if ":" in host:
                return IPv6Address("TCP", host, 40000)
            return IPv4Address("TCP", host, 40000)

    return FromElsewhere


class RemoteAccessTests(TestCase):
    @inlineCallbacks
    def _status_from(self, host: str, **config: object) -> object:
        daemon = start_daemon(self, **config)
        daemon.site.requestFactory = _remote_request_class(daemon.site.requestFactory, host)
        codes = []
        for path in ("/system", "/dicom-web/studies", "/unknown"):
            response, body = yield daemon.request("GET", path)
            codes.append(response.code)
            if response.code >= 400:
                self.assertEqual(json.loads(body)["HttpStatus"], response.code)
        return codes

    @inlineCallbacks
    def test_non_loopback_client_refused(self) -> None:
        codes = yield self._status_from("10.1.2.3")
        self.assertEqual(codes, [403, 403, 403])
        codes = yield self._status_from("2001:db8::7")
        self.assertEqual(codes, [403, 403, 403])

    @inlineCallbacks
    def test_loopback_clients_and_remote_access_allowed(self) -> None:
        codes = yield self._status_from("127.0.0.1")
        self.assertEqual(codes[0], 200)
        codes = yield self._status_from("::1")
        self.assertEqual(codes[0], 200)
        codes = yield self._status_from("10.1.2.3", remote_access_allowed=True)
        self.assertEqual(codes[0], 200)
        self.assertEqual(codes[2], 404)

    def test_is_loopback(self) -> None:
        for host in ("127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"):
            self.assertTrue(is_loopback(host), host)
        for host in ("10.0.0.1", "192.168.1.1", "::ffff:10.0.0.1", "2001:db8::1", "", "x"):
            self.assertFalse(is_loopback(host), host)


def make_certificate(directory: str, hostname: str = "localhost") -> tuple[str, bytes]:
    """A self-signed certificate + key in one PEM file (as ``SslCertificate`` wants)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    path = os.path.join(directory, "certificate.pem")
    with open(path, "wb") as fp:
        fp.write(cert_pem + key_pem)
    return path, cert_pem


class HttpsTests(TestCase):
    @inlineCallbacks
    def test_https_with_generated_certificate(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        pem, cert_pem = make_certificate(directory)
        config = make_config(directory, ssl_enabled=True, ssl_certificate=pem)
        daemon = build_daemon(config, reactor)
        site, store, pools = daemon.site, daemon.store, daemon.pools
        pools.start()
        store.open()
        self.addCleanup(store.close)
        self.addCleanup(pools.stop)
        description = listen_description(config).replace(f"port={config.http_port}", "port=0")
        port = yield serverFromString(reactor, description).listen(site)
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        trust = ssl.Certificate.loadPEM(cert_pem)
        policy = BrowserLikePolicyForHTTPS(trustRoot=trust)
        client = HTTPClient(Agent(reactor, contextFactory=policy,
                                  pool=HTTPConnectionPool(reactor, persistent=False)))
        response = yield client.post(f"https://localhost:{number}/instances",
                                     data=read(testdata("CT_small.dcm")))
        self.assertEqual(response.code, 200)
        answer = yield response.json()
        response = yield client.get(f"https://localhost:{number}{answer['Path']}/file")
        body = yield treq.content(response)
        self.assertEqual(body, read(testdata("CT_small.dcm")))
        # Plain HTTP on the HTTPS port does not get an answer.
        plain = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        with self.assertRaises(ResponseNeverReceived):
            yield plain.get(f"http://localhost:{number}/system", timeout=5)


class ListenDescriptionTests(SynchronousTestCase):
    def test_descriptions(self) -> None:
        config = make_config(self.mktemp())
        self.assertEqual(listen_description(config), "tcp:port=0:interface=127.0.0.1")
        remote = config.with_overrides(remote_access_allowed=True, http_port=8042)
        self.assertEqual(listen_description(remote), "tcp:port=8042:interface=\\:\\:")
        secure = config.with_overrides(ssl_enabled=True, ssl_certificate="/etc/x:y.pem")
        self.assertIn("privateKey=/etc/x\\:y.pem:certKey=/etc/x\\:y.pem",
                      listen_description(secure))
