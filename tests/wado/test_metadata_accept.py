"""Metadata negotiation as Orthanc answers it, with PS3.18's 406 for nothing acceptable:
browsers' Accept headers and lists get DICOM JSON."""

from __future__ import annotations

import json
from typing import Any

import pydicom
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import read, start_daemon, testdata

BROWSER = "text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8"


class MetadataAcceptTests(TestCase):
    @inlineCallbacks
    def test_negotiation(self) -> Any:
        daemon = start_daemon(self)
        name = testdata("CT_small.dcm")
        yield daemon.store.ingest_bytes(read(name))
        url = f"/dicom-web/studies/{pydicom.dcmread(name).StudyInstanceUID}/metadata"
        for accept, expected in [
            (None, "application/dicom+json"),
            (BROWSER, "application/dicom+json"),
            ("application/json, application/dicom+xml", "application/dicom+json"),
            ("application/xml, application/json;q=0.5", "application/dicom+json"),
            ("application/dicom+xml, application/json", "application/dicom+json"),
            ("toto, application/dicom+json", "application/dicom+json"),
            ("application/dicom+json", "application/dicom+json"),
            ("*/*", "application/dicom+json"),
            ('multipart/related; type="application/dicom+xml"', "multipart/related"),
            ("multipart/related; type=application/dicom+xml; transfer-syntax=*",
             "multipart/related"),
        ]:
            headers = {"Accept": [accept]} if accept else {}
            response, body = yield daemon.request("GET", url, headers=headers)
            self.assertEqual(response.code, 200, accept)
            ctype = response.headers.getRawHeaders("content-type")[0]
            self.assertTrue(ctype.startswith(expected), (accept, ctype))
            if expected == "application/dicom+json":
                self.assertEqual(len(json.loads(body)), 1)
        for accept, status in [
            ("text/html", 406), ("application/nope", 406), ("application/xml", 406),
            ("application/dicom+xml", 406), ("toto, tata", 406),
            ("multipart/related", 406), ('multipart/related; type="application/nope"', 406),
            ("multipart/related; type=application/dicom+xml; transfer-syntax=nope", 406),
            ("multipart/related;range=", 400),
        ]:
            response, _ = yield daemon.request("GET", url, headers={"Accept": [accept]})
            self.assertEqual(response.code, status, accept)
