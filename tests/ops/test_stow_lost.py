"""A STOW-RS client that leaves mid-request leaves no temporary file behind."""

from __future__ import annotations

import contextlib

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from dwdaemon.web import stow
from tests.support import read, start_daemon, testdata


class _SendAndLeave(Protocol):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def connectionMade(self) -> None:
        self.transport.write(self.data)
        self.transport.loseConnection()


class StowLostClientTests(TestCase):
    @inlineCallbacks
    def test_client_gone_during_processing(self) -> None:
        daemon = start_daemon(self)
        started: Deferred = Deferred()
        original = stow.StowTransaction.run

        def run(transaction: stow.StowTransaction) -> Deferred:
            d = original(transaction)
            started.callback([d])  # in a list: not chained into ``started``
            return d

        self.patch(stow.StowTransaction, "run", run)
        instance = read(testdata("CT_small.dcm"))
        part = b"--XX\r\nContent-Type: application/dicom\r\n\r\n" + instance + b"\r\n"
        body = part * 300 + b"--XX--\r\n"
        head = (b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n"
                b'Content-Type: multipart/related; type="application/dicom"; boundary=XX\r\n'
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        factory = ClientFactory.forProtocol(lambda: _SendAndLeave(head + body))
        reactor.connectTCP("127.0.0.1", daemon.port.getHost().port, factory)
        # Wait until the request ran to its end (completed or failed on the lost body).
        (done,) = yield started
        with contextlib.suppress(Exception):  # the body was closed under the parser: it failed
            yield done
        self.assertEqual(daemon.store.storage.temp_files(), [])
        stored = sum(1 for _ in daemon.store.storage.iter_files())
        stats = yield daemon.store.statistics()
        self.assertEqual(stats["instances"], 1 if stored else 0)
        # The request is counted once: 499 when the client was gone before the answer (the
        # usual case), 200 if the whole body was handled before the close was seen.
        metrics = daemon.parts.metrics
        # prometheus_client has no public getter of one child's value
        counts = {status: metrics.requests.labels("POST", "/dicom-web/studies", status)  # noqa: SLF001
                  ._value.get() for status in ("499", "200")}
        self.assertEqual(sum(counts.values()), 1)
        self.assertEqual(metrics.lost._value.get(), counts["499"])  # noqa: SLF001
