"""``DefaultEncoding`` and ``GET|PUT /tools/default-encoding`` (Orthanc's shapes), and the
Specific Character Set of QIDO-RS (always UTF-8) versus WADO-RS metadata (the file's own)."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pydicom
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.qido.data import instance
from tests.support import charset_files, read, start_daemon

STUDY = "1.2.826.0.1.3680043.8.498.77"


def without_charset(name: bytes) -> bytes:
    """A file without Specific Character Set whose PatientName holds the raw bytes *name*."""
    ds = pydicom.dcmread(io.BytesIO(instance(STUDY + ".1.1", STUDY, STUDY + ".1",
                                             PatientName="X", PatientID="P")))
    del ds.SpecificCharacterSet
    ds.PatientName = name
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


class PersonNameGroupTests(TestCase):
    def test_missing_groups_are_empty_strings(self) -> None:
        from dwdaemon.dicom.jsonmodel import dataset_to_json

        ds = pydicom.dcmread(io.BytesIO(instance("1.2.3.1", "1.2.3", "1.2.3.4",
                                                 PatientName="Wang^XiaoDong=王^小东",
                                                 ReferringPhysicianName="Doe^John")))
        out = dataset_to_json(ds).dataset
        self.assertEqual(out["00100010"]["Value"], [
            {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东", "Phonetic": ""}])
        self.assertEqual(out["00080090"]["Value"], [{"Alphabetic": "Doe^John"}])


class DefaultEncodingRouteTests(TestCase):
    @inlineCallbacks
    def test_get_and_put(self) -> Any:
        daemon = start_daemon(self)
        response, body = yield daemon.request("GET", "/tools/default-encoding")
        self.assertEqual((response.code, body), (200, b"Latin1"))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/plain"])
        response, body = yield daemon.request("PUT", "/tools/default-encoding", data=b"utf8")
        self.assertEqual((response.code, body), (200, b"Utf8"))
        response, body = yield daemon.request("GET", "/tools/default-encoding")
        self.assertEqual(body, b"Utf8")
        for bad in (b"nope", b"", b"\xff"):
            response, body = yield daemon.request("PUT", "/tools/default-encoding", data=bad)
            self.assertEqual(response.code, 400, bad)
            self.assertIn("Latin1", json.loads(body)["Message"])
        response, body = yield daemon.request("GET", "/tools/default-encoding")
        self.assertEqual(body, b"Utf8")

    @inlineCallbacks
    def test_configured_value(self) -> Any:
        daemon = start_daemon(self, default_encoding="Greek")
        _, body = yield daemon.request("GET", "/tools/default-encoding")
        self.assertEqual(body, b"Greek")


class DefaultEncodingIngestTests(TestCase):
    """Files without Specific Character Set are decoded with the default encoding."""

    @inlineCallbacks
    def name_of(self, daemon: Any) -> Any:
        _, body = yield daemon.request("GET", f"/dicom-web/studies?StudyInstanceUID={STUDY}")
        answer = json.loads(body)[0]
        self.assertEqual(answer["00080005"]["Value"], ["ISO_IR 192"])
        return answer["00100010"]["Value"][0]["Alphabetic"]

    @inlineCallbacks
    def test_latin1_by_default_then_utf8(self) -> Any:
        daemon = start_daemon(self)
        yield daemon.store.ingest_bytes(without_charset("Jérôme".encode("latin-1")))
        name = yield self.name_of(daemon)
        self.assertEqual(name, "Jérôme")
        yield daemon.request("PUT", "/tools/default-encoding", data=b"Utf8")
        self.assertEqual(daemon.store.default_encoding, "Utf8")  # for the next files

    @inlineCallbacks
    def test_utf8_configured(self) -> Any:
        daemon = start_daemon(self, default_encoding="Utf8")
        yield daemon.store.ingest_bytes(without_charset("Jérôme".encode()))
        name = yield self.name_of(daemon)
        self.assertEqual(name, "Jérôme")


class CharacterSetTests(TestCase):
    """QIDO-RS declares ISO_IR 192 (its JSON is UTF-8); metadata keeps the file's value, as
    Orthanc does (test_encodings_qido / test_encodings_wado_metadata)."""

    @inlineCallbacks
    def test_qido_and_metadata(self) -> Any:
        daemon = start_daemon(self)
        checked = 0
        for path in charset_files():
            ds = pydicom.dcmread(path)
            charset = ds.get("SpecificCharacterSet")
            if not charset or ("PixelData" not in ds and "Rows" in ds) or not all(
                    k in ds for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                                      "SOPClassUID")):
                continue
            yield daemon.store.ingest_bytes(read(path))
            study = ds.StudyInstanceUID
            _, body = yield daemon.request("GET", f"/dicom-web/studies?StudyInstanceUID={study}")
            qido = json.loads(body)[0]
            self.assertEqual(qido["00080005"], {"vr": "CS", "Value": ["ISO_IR 192"]}, path)
            _, body = yield daemon.request(
                "GET", f"/dicom-web/studies/{study}/series/{ds.SeriesInstanceUID}/instances/"
                       f"{ds.SOPInstanceUID}/metadata")
            metadata = json.loads(body)[0]
            expected = list(charset) if isinstance(charset, pydicom.multival.MultiValue) \
                else [charset]
            got = metadata["00080005"]["Value"]
            # the file's terms, an empty first term (ISO-IR 6 before ISO 2022) left out
            self.assertEqual(got, [v for v in expected if v], os.path.basename(path))
            names = qido.get("00100010", {}).get("Value", [])
            for name in names:  # several groups: all three keys (Orthanc's shape)
                if len(name) > 1:
                    self.assertEqual(sorted(name), ["Alphabetic", "Ideographic", "Phonetic"])
            checked += 1
        self.assertGreater(checked, 5)
