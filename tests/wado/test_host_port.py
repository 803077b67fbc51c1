"""URLs built from a ``Host`` header without a port (``dicomweb-client`` sends
``Host: 127.0.0.1``): the port the request arrived on is added when the name is the address
the connection reached; other names (proxies, virtual hosts) are kept as sent, as Orthanc does."""

from __future__ import annotations

import json
from typing import Any

import pydicom
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dwdaemon.web.urls import host_with_port
from tests.support import read, start_daemon, testdata


class HostWithPortTests(SynchronousTestCase):
    def test_rules(self) -> None:
        for host, local, port, scheme, expected in [
            ("127.0.0.1", "127.0.0.1", 18690, "http", "127.0.0.1:18690"),
            ("127.0.0.1", "::ffff:127.0.0.1", 18690, "http", "127.0.0.1:18690"),
            ("localhost", "127.0.0.1", 8042, "http", "localhost:8042"),
            ("[::1]", "::1", 8042, "http", "[::1]:8042"),
            ("10.1.2.3", "10.1.2.3", 8042, "http", "10.1.2.3:8042"),
            ("127.0.0.1:9000", "127.0.0.1", 8042, "http", "127.0.0.1:9000"),
            ("[::1]:9000", "::1", 8042, "http", "[::1]:9000"),
            ("my-domain", "127.0.0.1", 8042, "http", "my-domain"),  # test_forwarded_headers
            ("localhost", "10.1.2.3", 8042, "http", "localhost"),
            ("127.0.0.1", "127.0.0.1", 80, "http", "127.0.0.1"),
            ("127.0.0.1", "127.0.0.1", 443, "https", "127.0.0.1"),
        ]:
            self.assertEqual(host_with_port(host, local, port, scheme), expected,
                             (host, local, port))


class HostHeaderTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Any:
        self.daemon = start_daemon(self)
        self.name = testdata("CT_small.dcm")
        yield self.daemon.store.ingest_bytes(read(self.name))
        ds = pydicom.dcmread(self.name)
        self.uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        self.pixels = ds.PixelData

    @inlineCallbacks
    def bulk_uri(self, **headers: str) -> Any:
        study, series, sop = self.uids
        _, body = yield self.daemon.request(
            "GET", f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata",
            headers={k.replace("_", "-"): [v] for k, v in headers.items()})
        return json.loads(body)[0]["7FE00010"]["BulkDataURI"]

    @inlineCallbacks
    def test_headers(self) -> Any:
        port = self.daemon.port.getHost().port
        uri = yield self.bulk_uri(Host="127.0.0.1")
        self.assertTrue(uri.startswith(f"http://127.0.0.1:{port}/dicom-web/"), uri)
        uri = yield self.bulk_uri(Host="my-domain")
        self.assertTrue(uri.startswith("http://my-domain/dicom-web/"), uri)
        uri = yield self.bulk_uri(Host="127.0.0.1", X_Forwarded_Proto="https")
        self.assertTrue(uri.startswith("https://127.0.0.1/dicom-web/"), uri)
        uri = yield self.bulk_uri(Host="127.0.0.1", X_Forwarded_Host="proxy.example")
        self.assertTrue(uri.startswith("http://proxy.example/dicom-web/"), uri)
        uri = yield self.bulk_uri(Host="127.0.0.1", Forwarded="host=p.example;proto=https")
        self.assertTrue(uri.startswith("https://p.example/dicom-web/"), uri)

    @inlineCallbacks
    def test_dicomweb_client_bulk_retrieval(self) -> Any:
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=self.daemon.dicomweb)
        study, series, sop = self.uids

        def calls() -> tuple[Any, Any]:
            try:
                metadata = client.retrieve_instance_metadata(study, series, sop)
                uri = metadata["7FE00010"]["BulkDataURI"]
                return uri, client.retrieve_bulkdata(uri)
            finally:
                client._session.close()  # noqa: SLF001 - dicomweb-client has no public close

        uri, parts = yield deferToThread(calls)
        self.assertIn(f":{self.daemon.port.getHost().port}/", uri)
        self.assertEqual(parts, [self.pixels])
