"""The HTTP channel: a read holding the head and a large body gives the same request."""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from twisted.web import http, resource, server

from dwdaemon.web import channel as channel_module
from dwdaemon.web.channel import HTTPChannel


class Echo(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def render_POST(self, request: server.Request) -> bytes:
        body = request.content.read()
        self.bodies.append(body)
        return b"%d" % len(body)


def connect(site: server.Site) -> tuple[HTTPChannel, StringTransport]:
    site.protocol = HTTPChannel
    site.timeOut = None  # no idle-timeout DelayedCall left in the reactor
    proto = site.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /x HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two: 2\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class ChannelTests(TestCase):
    def setUp(self) -> None:
        self.echo = Echo()
        self.site = server.Site(self.echo)

    def test_head_and_big_body_in_one_read(self) -> None:
        body = bytes(range(256)) * 2048  # 512 KiB, with CRLFs inside
        fed: list[tuple[bool, int]] = []
        original = http.HTTPChannel.dataReceived

        def recording(channel: http.HTTPChannel, data: bytes) -> None:
            fed.append((channel.line_mode, len(data)))
            original(channel, data)

        self.patch(http.HTTPChannel, "dataReceived", recording)
        proto, transport = connect(self.site)
        data = post(body)
        proto.dataReceived(data)
        self.assertEqual(self.echo.bodies, [body])
        self.assertIn(b"200 OK", transport.value())
        # The line parser (which copies its buffer once per header line) saw the head only.
        head = data.index(b"\r\n\r\n") + 4
        self.assertEqual(fed, [(True, head), (False, len(body))])

    def test_two_pipelined_requests_in_one_read(self) -> None:
        a, b = b"a" * 40000, b"b" * 30000
        proto, transport = connect(self.site)
        proto.dataReceived(post(a) + post(b))
        self.assertEqual(self.echo.bodies, [a, b])
        self.assertEqual(transport.value().count(b"200 OK"), 2)

    def test_head_split_across_reads(self) -> None:
        body = b"z" * 100000
        data = post(body)
        proto, _ = connect(self.site)
        proto.dataReceived(data[:20])
        proto.dataReceived(data[20:])
        self.assertEqual(self.echo.bodies, [body])

    def test_bad_head_drops_the_rest(self) -> None:
        proto, transport = connect(self.site)
        proto.dataReceived(b"BROKEN\r\n\r\n" + b"x" * channel_module.HEAD_SPLIT_MIN)
        self.assertIn(b"400", transport.value())
        self.assertEqual(self.echo.bodies, [])
