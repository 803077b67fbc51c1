"""Orthanc's metadata shapes for small binary values and files whose data set lacks
SOPClassUID (its test_issue_195, on our own generated data)."""

from __future__ import annotations

import io
import json
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import start_daemon
from tests.wado.helpers import split_multipart

STUDY = "1.2.826.0.1.3680043.8.498.195"
SERIES = STUDY + ".1"
SOP = SERIES + ".1"


def minimal_file() -> bytes:
    """Five elements, SOPClassUID only in the file meta, a 2-byte and an empty UN value."""
    ds = Dataset()
    ds.SOPInstanceUID = SOP
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.add_new(0x00084565, "UN", b"")
    ds.add_new(0x00084567, "UN", b"B\x00")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"
    meta.MediaStorageSOPInstanceUID = SOP
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class SmallBulkTests(TestCase):
    @inlineCallbacks
    def test_minimal_instance(self) -> Any:
        daemon = start_daemon(self)
        # Orthanc's test uploads it with POST /instances, which takes the UIDs from the meta
        response, _ = yield daemon.request("POST", "/instances", data=minimal_file())
        self.assertEqual(response.code, 200)
        base = f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{SOP}"
        _, body = yield daemon.request("GET", base + "/metadata")
        metadata = json.loads(body)[0]
        self.assertEqual(len(metadata), 5)  # SOPClassUID is not added to the data set
        self.assertEqual(metadata["00084565"], {"vr": "UN"})
        self.assertEqual(metadata["00084567"],
                         {"vr": "UN", "BulkDataURI": f"{daemon.url}{base}/bulk/00084567"})
        response, body = yield daemon.request("GET", base + "/bulk/00084567")
        ctype = response.headers.getRawHeaders("content-type")[0]
        parts = split_multipart(ctype, body)
        self.assertEqual(parts[0][1], b"B\x00")
        self.assertEqual(parts[0][0]["content-length"], "2")
        # the index has the class from the meta information
        _, body = yield daemon.request(
            "GET", "/dicom-web/instances?SOPClassUID=1.2.276.0.7230010.3.1.0.1")
        self.assertEqual([a["00080018"]["Value"] for a in json.loads(body)], [[SOP]])


class BulkPathTests(TestCase):
    """Stored bulk paths (upper case, items from 0) and their URL form (Orthanc's spelling)."""

    def test_round_trip(self) -> None:
        from dwdaemon.dicom.jsonmodel import public_bulk_path, stored_bulk_path

        for stored, public in [("7FE00010", "7fe00010"),
                               ("60031010/0/60031011", "60031010/1/60031011"),
                               ("00400555/11/0040A730/0/00420011",
                                "00400555/12/0040a730/1/00420011")]:
            self.assertEqual(public_bulk_path(stored), public)
            self.assertEqual(stored_bulk_path(public), stored)
            self.assertEqual(stored_bulk_path(public.upper()), stored)
        self.assertEqual(stored_bulk_path("0010,0010"), "00100010")
        self.assertEqual(stored_bulk_path("/6003,1010/2/6003,1011/"), "60031010/1/60031011")
        for bad in ("", "0010", "00100010/1", "00100010/0/00100020", "00100010/x/00100020",
                    "0010001G", "00100010/-1/00100020"):
            self.assertIsNone(stored_bulk_path(bad), bad)
