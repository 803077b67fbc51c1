"""Limits against hostile clients: head size and deadline, connection caps, bodies, OPTIONS."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from dwdaemon.config import parse_config
from dwdaemon.tap import build_daemon
from dwdaemon.threads import ThreadPools
from dwdaemon.web.limits import HttpLimits, RefusalLog
from tests.support import make_config, start_daemon


class RefusalLogTests(TestCase):
    def test_burst_then_summary(self) -> None:
        now = [0.0]
        lines: list[str] = []
        refusals = RefusalLog(burst=2, window=10, clock=lambda: now[0], emit=lines.append)
        results = [refusals.refused("10.0.0.1", 414, "long") for _ in range(5)]
        self.assertEqual(results, [True, True, False, False, False])
        self.assertTrue(refusals.refused("10.0.0.2", 400, "bad"))  # another client
        now[0] = 11
        self.assertTrue(refusals.refused("10.0.0.1", 414, "long"))
        self.assertIn("refused 10.0.0.1: 3 more refusals not logged", lines)
        self.assertEqual(len(lines), 5)
        self.assertTrue(all("\n" not in line for line in lines))


class ConnectionCountTests(TestCase):
    def test_admit_and_release(self) -> None:
        limits = HttpLimits(max_connections=3, max_per_client=2)
        self.assertIsNone(limits.admit("a"))
        self.assertIsNone(limits.admit("a"))
        self.assertIn("MaximumConnectionsPerClient", limits.admit("a") or "")
        self.assertIsNone(limits.admit("b"))
        self.assertIn("MaximumConnections ", limits.admit("c") or "")
        limits.release("a")
        self.assertIsNone(limits.admit("c"))
        for host in ("a", "b", "c"):
            limits.release(host)
        self.assertEqual((limits.total, limits.per_client), (0, {}))


class ChannelTests(TestCase):
    """The channel on an in-memory transport and a fake clock."""

    def setUp(self) -> None:
        config = make_config(self.mktemp(), http_request_timeout=30,
                             maximum_request_head_size=4, maximum_connections_per_client=2)
        pools = ThreadPools(synchronous=True)
        daemon = build_daemon(config, pools=pools)
        self.site, self.store = daemon.site, daemon.store
        self.store.open()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.logged: list[str] = []
        self.site.dw_limits.refusals.emit = self.logged.append

    def connect(self, host: str = "127.0.0.7") -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        channel = self.site.buildProtocol(address)
        channel.callLater = self.clock.callLater
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        self.addCleanup(lambda: channel.connectionLost(None) if channel.transport else None)
        return channel, transport

    def answer(self, transport: StringTransport) -> tuple[int, dict[str, Any]]:
        head, _, body = transport.value().partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if body else {}

    def test_long_request_line_is_414(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /dicom-web/studies?PatientName=" + b"a" * 5000 + b" HTTP/1.1")
        status, doc = self.answer(transport)
        self.assertEqual(status, 414)
        self.assertIn("MaximumRequestHeadSize (4 KB)", doc["Message"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.logged), 1)

    def test_large_headers_are_431(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /system HTTP/1.1\r\nHost: x\r\n")
        for i in range(10):
            channel.dataReceived(b"X-Filler-%d: %s\r\n" % (i, b"b" * 500))
        status, doc = self.answer(transport)
        self.assertEqual(status, 431)
        self.assertIn("MaximumRequestHeadSize", doc["Message"])

    def test_slow_head_is_408(self) -> None:
        channel, transport = self.connect()
        for byte in b"GET /system HTTP/1.1\r\nHost:":
            channel.dataReceived(bytes([byte]))
            self.clock.advance(1)  # one byte a second: the idle timeout never fires
        self.assertEqual(transport.value(), b"")
        self.clock.advance(10)
        status, doc = self.answer(transport)
        self.assertEqual(status, 408)
        self.assertIn("HttpRequestTimeout (30 s)", doc["Message"])

    def test_silent_connection_is_408(self) -> None:
        _, transport = self.connect()
        self.clock.advance(31)
        self.assertEqual(self.answer(transport)[0], 408)

    def test_complete_head_is_not_408(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /system HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(31)
        self.assertEqual(int(transport.value().split(b" ", 2)[1]), 200)
        self.assertFalse(self.clock.getDelayedCalls() and
                         any(c.func == channel._head_timed_out  # noqa: SLF001 - white-box: the channel's timer
                             for c in self.clock.getDelayedCalls()))

    def test_connections_per_client_503(self) -> None:
        self.connect()
        self.connect()
        _, third = self.connect()
        status, doc = self.answer(third)
        self.assertEqual(status, 503)
        self.assertIn(b"Retry-After: 5", third.value())
        self.assertIn("MaximumConnectionsPerClient is 2", doc["Message"])
        _, other = self.connect("127.0.0.8")  # another client still gets in
        self.assertEqual(other.value(), b"")

    def test_released_connection_frees_a_slot(self) -> None:
        first, _ = self.connect()
        self.connect()
        first.connectionLost(None)
        _, third = self.connect()
        self.assertEqual(third.value(), b"")

    def test_malformed_request_line_is_json_400(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GARBAGE\r\n\r\n")
        status, doc = self.answer(transport)
        self.assertEqual((status, doc["HttpStatus"]), (400, 400))


class BodyLimitTests(TestCase):
    @inlineCallbacks
    def test_other_bodies_use_maximum_request_size(self) -> None:
        daemon = start_daemon(self, maximum_request_size=1, maximum_upload_size=8)
        response, body = yield daemon.request("PUT", "/dicom-web/servers/x",
                                              data=b"{" + b" " * (2 << 20) + b"}")
        self.assertEqual(response.code, 413)
        self.assertIn(b"MaximumRequestSize", body)
        # an upload of the same size is allowed (and refused for not being DICOM)
        response, body = yield daemon.request("POST", "/instances", data=b"\0" * (2 << 20))
        self.assertEqual(response.code, 400)

    @inlineCallbacks
    def test_uploads_use_maximum_upload_size(self) -> None:
        daemon = start_daemon(self, maximum_upload_size=1)
        response, body = yield daemon.request(
            "POST", "/dicom-web//studies", data=b"\0" * (2 << 20),
            headers={"Content-Type": "multipart/related; boundary=x"})
        self.assertEqual(response.code, 413)
        self.assertIn(b"MaximumUploadSize (1 MB)", body)

    def test_old_files_keep_one_limit(self) -> None:
        config, _ = parse_config('{"MaximumRequestSize": 5}', ".", None)
        self.assertEqual((config.maximum_request_size, config.maximum_upload_size), (5, 5))
        config, _ = parse_config('{"MaximumRequestSize": 5, "MaximumUploadSize": 9}', ".", None)
        self.assertEqual(config.maximum_upload_size, 9)
        config, _ = parse_config("{}", ".", None)
        self.assertEqual((config.maximum_request_size, config.maximum_upload_size), (64, 4096))


class OptionsAndPathTests(TestCase):
    @inlineCallbacks
    def test_options_on_a_route(self) -> None:
        daemon = start_daemon(self)
        response, body = yield daemon.request("OPTIONS", "/dicom-web/studies")
        self.assertEqual(response.code, 200)  # with its PS3.18 capabilities (WADL) as body
        allow = {m.strip() for m in response.headers.getRawHeaders("allow")[0].split(",")}
        self.assertTrue({"GET", "OPTIONS", "POST"} <= allow, allow)

    @inlineCallbacks
    def test_options_needs_authentication(self) -> None:
        daemon = start_daemon(self, authentication_enabled=True,
                              registered_users={"alice": "secret"})
        response, _ = yield daemon.request("OPTIONS", "/dicom-web/studies")
        self.assertEqual(response.code, 401)

    def test_options_star_needs_authentication(self) -> None:
        config = make_config(self.mktemp(), authentication_enabled=True,
                             registered_users={"alice": "secret"})
        daemon = build_daemon(config, pools=ThreadPools(synchronous=True))
        site, store = daemon.site, daemon.store
        store.open()
        self.addCleanup(store.close)
        for auth, expected in ((b"", b" 401 "), (b"Authorization: Basic YWxpY2U6c2VjcmV0\r\n",
                                                  b" 200 ")):
            address = IPv4Address("TCP", "127.0.0.1", 40000)
            channel = site.buildProtocol(address)
            channel.callLater = Clock().callLater
            transport = StringTransport(peerAddress=address)
            channel.makeConnection(transport)
            channel.dataReceived(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            self.assertIn(expected, transport.value().split(b"\r\n")[0])
            if expected == b" 200 ":
                self.assertIn(b"Allow: DELETE, GET, HEAD, OPTIONS, POST, PUT", transport.value())
            channel.connectionLost(None)

    @inlineCallbacks
    def test_non_utf8_path_is_400_without_traceback(self) -> None:
        daemon = start_daemon(self)
        response, body = yield daemon.request("GET", "/dicom-web/studies/%c0%ae")
        self.assertEqual(response.code, 400)
        self.assertIn("UTF-8", json.loads(body)["Message"])
        self.assertEqual(self.flushLoggedErrors(), [])


class AbsoluteFormTests(TestCase):
    def test_absolute_form_is_routed_by_its_path(self) -> None:
        config = make_config(self.mktemp())
        daemon = build_daemon(config, pools=ThreadPools(synchronous=True))
        site, store = daemon.site, daemon.store
        store.open()
        self.addCleanup(store.close)
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = site.buildProtocol(address)
        channel.callLater = Clock().callLater
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        channel.dataReceived(b"GET http://example.org:8042/system HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b" 200 ", transport.value().split(b"\r\n")[0])
        channel.connectionLost(None)
