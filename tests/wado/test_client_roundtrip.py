"""Round trip with the dicomweb-client package, and a client leaving mid-stream."""

from __future__ import annotations

import contextlib
import os
import socket

import numpy as np
from pydicom.uid import generate_uid
from twisted.internet import reactor, threads
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support import start_daemon
from tests.wado.helpers import make_image, path, read, reference_pixels


class DicomwebClientTests(TestCase):
    @inlineCallbacks
    def test_retrieve_calls(self):
        from dicomweb_client.api import DICOMwebClient

        daemon = start_daemon(self)
        for name in ("CT_small.dcm", "examples_ybr_color.dcm"):
            with open(path(name), "rb") as f:
                yield daemon.store.ingest_bytes(f.read())
        client = DICOMwebClient(url=daemon.dicomweb)
        ct = read("CT_small.dcm")
        us = read("examples_ybr_color.dcm")

        def calls():
            try:
                return _calls()
            finally:
                client._session.close()  # no keep-alive connection left to the daemon  # noqa: SLF001 - dicomweb-client has no public close

        def _calls():
            study = client.retrieve_study(ct.StudyInstanceUID)
            metadata = client.retrieve_series_metadata(ct.StudyInstanceUID, ct.SeriesInstanceUID)
            frames = client.retrieve_instance_frames(ct.StudyInstanceUID, ct.SeriesInstanceUID,
                                                     ct.SOPInstanceUID, [1])
            jpeg_frames = client.retrieve_instance_frames(
                us.StudyInstanceUID, us.SeriesInstanceUID, us.SOPInstanceUID, [2, 3],
                media_types=("image/jpeg",))
            rendered = client.retrieve_instance_rendered(
                ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID,
                media_types=("image/png",))
            return study, metadata, frames, jpeg_frames, rendered

        study, metadata, frames, jpeg_frames, rendered = yield threads.deferToThread(calls)
        yield deferLater(reactor, 0.1, lambda: None)  # let the daemon see the close
        self.assertEqual(len(study), 1)
        self.assertEqual(study[0].SOPInstanceUID, ct.SOPInstanceUID)
        np.testing.assert_array_equal(study[0].pixel_array, reference_pixels("CT_small.dcm"))
        self.assertEqual(metadata[0]["00080018"]["Value"], [ct.SOPInstanceUID])
        self.assertEqual(frames, [reference_pixels("CT_small.dcm").tobytes()])
        self.assertEqual(len(jpeg_frames), 2)
        self.assertEqual(jpeg_frames[0][:2], b"\xff\xd8")
        self.assertEqual(rendered[:8], b"\x89PNG\r\n\x1a\n")


class DisconnectTests(TestCase):
    @inlineCallbacks
    def test_client_leaves_mid_study(self):
        daemon = start_daemon(self)
        study, series = generate_uid(), generate_uid()
        for i in range(12):
            pixels = np.full((512, 512), i, np.uint16)
            yield daemon.store.ingest_bytes(make_image(pixels, study=study, series=series,
                                                       InstanceNumber=i + 1))
        port = daemon.port.getHost().port

        def leave_early() -> int:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /dicom-web/studies/{study} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = len(sock.recv(65536))
            sock.close()
            return received

        received = yield threads.deferToThread(leave_early)
        self.assertGreater(received, 0)
        yield deferLater(reactor, 0.5, lambda: None)
        # the daemon serves on, closed its files and logged no error
        response, body = yield daemon.request("GET", f"/dicom-web/studies/{study}/metadata")
        self.assertEqual(response.code, 200)
        storage = daemon.store.storage.root
        open_files = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.assertEqual([f for f in open_files if f.startswith(storage)], [])
        self.assertEqual(self.flushLoggedErrors(), [])
