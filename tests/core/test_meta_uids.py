"""A data set without SOPClassUID/SOPInstanceUID: ``POST /instances`` takes them from the file
meta information (as Orthanc does); STOW-RS refuses it (PS3.18: the data set must have them)."""

from __future__ import annotations

import io
import json
import warnings

import pydicom
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import start_daemon, testdata


def without(*keywords: str) -> tuple[bytes, pydicom.Dataset]:
    """CT_small.dcm with ``keywords`` removed from the data set (the meta keeps them)."""
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    for keyword in keywords:
        delattr(ds, keyword)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue(), ds


class MetaUidTests(TestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)
        self.daemon = start_daemon(self)

    @inlineCallbacks
    def test_post_instances_takes_uids_from_meta(self) -> None:
        data, ds = without("SOPClassUID", "SOPInstanceUID")
        self.assertIn(b"1.2.840.10008.5.1.4.1.1.2", data[:400])  # still in the meta
        response, body = yield self.daemon.request("POST", "/instances", data=data)
        self.assertEqual(response.code, 200, body)
        answer = json.loads(body)
        sop = str(ds.file_meta.MediaStorageSOPInstanceUID)
        sop_class = str(ds.file_meta.MediaStorageSOPClassUID)
        path = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances?SOPInstanceUID={sop}&SOPClassUID={sop_class}")
        response, body = yield self.daemon.request("GET", path)
        found = json.loads(body)
        self.assertEqual(len(found), 1)  # both UIDs are indexed from the meta
        self.assertTrue(found[0]["00081190"]["Value"][0].endswith(f"/instances/{sop}"))
        # the stored file is the one sent; the metadata has no SOPClassUID added
        response, body = yield self.daemon.request("GET", f"/instances/{answer['ID']}/file")
        self.assertEqual(body, data)
        response, body = yield self.daemon.request(
            "GET", f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata")
        self.assertNotIn("00080016", json.loads(body)[0])

    @inlineCallbacks
    def test_stow_refuses_a_data_set_without_sop_class(self) -> None:
        data, _ = without("SOPClassUID")
        boundary = "XXdwXX"
        body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
                + f"\r\n--{boundary}--\r\n".encode())
        response, answer = yield self.daemon.request(
            "POST", "/dicom-web/studies", data=body, headers={
                "Content-Type": f'multipart/related; type="application/dicom"; '
                                f"boundary={boundary}"})
        self.assertEqual(response.code, 400, answer)
        doc = json.loads(answer)
        self.assertEqual(doc["00081199"], {"vr": "SQ"})
        response, listing = yield self.daemon.request("GET", "/instances")
        self.assertEqual(json.loads(listing), [])
