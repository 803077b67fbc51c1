"""BodyProducer: multipart bodies from files, pausing, disconnects, read failures."""

from __future__ import annotations

import os
import tempfile

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial import unittest

from dwdaemon.dicom import multipart
from dwdaemon.web import producers


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class FakeChannel:
    def __init__(self) -> None:
        self.transport = FakeTransport()


class FakeRequest:
    """Records writes; can pause its producer after each write (slow client)."""

    def __init__(self, pause_every_write: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.producer: producers.BodyProducer | None = None
        self.unregistered = False
        self.pause_every_write = pause_every_write
        self.channel = FakeChannel()
        self._finish: Deferred[None] = Deferred()

    def registerProducer(self, producer, streaming) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True

    def notifyFinish(self) -> Deferred[None]:
        return self._finish

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.pause_every_write and self.producer is not None:
            self.producer.pauseProducing()

    def lose(self) -> None:
        self._finish.errback(Failure(ConnectionError("gone")))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class Runner:
    """A runner whose 'thread' results are fired by the test (to interleave events)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Deferred, object]] = []

    def __call__(self, func, *args):
        d: Deferred = Deferred()
        try:
            self.pending.append((d, func(*args)))
        except Exception:
            self.pending.append((d, Failure()))
        return d

    def flush(self) -> None:
        """Fire the reads queued so far (not those they queue in turn)."""
        pending, self.pending = self.pending, []
        for d, result in pending:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


class ProducerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "data.bin")
        self.data = os.urandom(300_000)
        with open(self.path, "wb") as f:
            f.write(self.data)

    def test_multipart_body(self) -> None:
        boundary = multipart.new_boundary()
        parts = [
            ("application/dicom", [("Content-Location", "/a")], producers.FilePart(self.path)),
            ("application/octet-stream", [], producers.FilePart(self.path,
                                                                [(10, 5), (1000, 70_000)])),
            ("image/jpeg", [], producers.BytesPart(b"jpeg")),
            ("application/dicom", [], producers.ComputedPart(lambda: b"computed")),
        ]
        request = FakeRequest()
        d = producers.stream(request, producers.multipart_pieces(boundary, parts),
                             producers.run_inline, chunk_size=4096)
        self.assertIsNone(self.successResultOf(d))
        expected = multipart.build(boundary, [
            ("application/dicom", self.data),
            ("application/octet-stream", self.data[10:15] + self.data[1000:71_000]),
            ("image/jpeg", b"jpeg"),
            ("application/dicom", b"computed"),
        ])
        # build() has no extra headers: insert the Content-Location of the first part
        expected = expected.replace(b"Content-Type: application/dicom\r\n\r\n",
                                    b"Content-Type: application/dicom\r\nContent-Location: /a"
                                    b"\r\n\r\n", 1)
        self.assertEqual(request.body, expected)
        self.assertTrue(request.unregistered)

    def test_pause_keeps_one_chunk_in_flight(self) -> None:
        request = FakeRequest(pause_every_write=True)
        runner = Runner()
        d = producers.stream(request, [producers.FilePart(self.path)], runner, chunk_size=1000)
        writes = 0
        while not d.called:
            runner.flush()
            self.assertEqual(len(request.chunks), writes + 1 if not d.called else len(
                request.chunks))
            self.assertEqual(runner.pending, [])  # paused: no read ahead
            writes = len(request.chunks)
            self.assertLessEqual(len(request.chunks[-1]), 1000)
            request.producer.resumeProducing()
            runner.flush()
            if d.called:
                break
        self.assertEqual(request.body, self.data)

    def test_disconnect_mid_stream(self) -> None:
        request = FakeRequest()
        runner = Runner()
        part = producers.FilePart(self.path)
        d = producers.stream(request, [b"head", part, b"tail"], runner, chunk_size=1000)
        runner.flush()  # first chunk
        self.assertEqual(request.body, b"head" + self.data[:1000])
        # the client goes away while the next read is in the worker
        request.producer.stopProducing()
        request.lose()
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNotNone(part._file)  # still being read by the worker: not closed under it  # noqa: SLF001 - white-box: the producer's file
        runner.flush()
        self.assertIsNone(part._file)  # noqa: SLF001 - white-box: the producer's file
        self.assertEqual(request.body, b"head" + self.data[:1000])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_cancel_closes(self) -> None:
        request = FakeRequest()
        runner = Runner()
        part = producers.FilePart(self.path)
        d = producers.stream(request, [part], runner, chunk_size=1000)
        runner.flush()
        d.cancel()  # what Klein does on disconnect
        self.assertIsNone(self.successResultOf(d))
        runner.flush()
        self.assertIsNone(part._file)  # noqa: SLF001 - white-box: the producer's file
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_failure_before_writing_is_reported(self) -> None:
        request = FakeRequest()
        d = producers.stream(request, [producers.FilePart(os.path.join(self.dir, "missing"))],
                             producers.run_inline)
        self.failureResultOf(d, FileNotFoundError)
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)

    def test_failure_after_writing_aborts(self) -> None:
        def boom() -> bytes:
            raise RuntimeError("codec")

        request = FakeRequest()
        d = producers.stream(request, [b"started", producers.ComputedPart(boom)],
                             producers.run_inline)
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(request.channel.transport.aborted)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_short_file_is_an_error(self) -> None:
        request = FakeRequest()
        d = producers.stream(request, [producers.FilePart(self.path, [(299_990, 100)])],
                             producers.run_inline)
        self.failureResultOf(d, OSError)
        self.flushLoggedErrors(OSError)

    def test_run_inline(self) -> None:
        self.assertEqual(self.successResultOf(producers.run_inline(lambda: 3)), 3)
        self.failureResultOf(producers.run_inline(lambda: 1 / 0), ZeroDivisionError)
