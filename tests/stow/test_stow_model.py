"""Tests for the pure STOW-RS helpers."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom import stow_model as sm
from dwdaemon.dicom.xmlmodel import dataset_json_to_xml


def testfile(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return path


class ResponseTests(SynchronousTestCase):
    def test_all_stored(self) -> None:
        stored = [sm.StoredInstance("1.2.3", "1.2.3.4", "1.9", "http://h/studies/1.9/series/1/"
                                    "instances/1.2.3.4")]
        out = sm.build_response(stored, [], "http://h/studies/1.9")
        self.assertEqual(out["00081190"], {"vr": "UR", "Value": ["http://h/studies/1.9"]})
        self.assertNotIn("00081198", out)
        item = out["00081199"]["Value"][0]
        self.assertEqual(item["00081150"]["Value"], ["1.2.3"])
        self.assertEqual(item["00081155"]["Value"], ["1.2.3.4"])
        self.assertEqual(item["00081190"]["vr"], "UR")
        self.assertNotIn("00081196", item)
        self.assertEqual(sm.response_status(stored, []), 200)
        # The JSON is a valid DICOM JSON dataset.
        ds = pydicom.Dataset.from_json(out)
        self.assertEqual(ds.ReferencedSOPSequence[0].ReferencedSOPInstanceUID, "1.2.3.4")

    def test_partial_and_warnings(self) -> None:
        stored = [sm.StoredInstance("1.2", "1.2.1", "9", "u", sm.WARNING_COERCION)]
        failed = [sm.FailedInstance("1.2", "1.2.2", sm.CANNOT_UNDERSTAND),
                  sm.FailedInstance("", "", sm.CANNOT_UNDERSTAND)]
        out = sm.build_response(stored, failed, None)
        self.assertNotIn("00081190", out)
        self.assertEqual(len(out["00081198"]["Value"]), 1)  # no item without its two UIDs
        self.assertEqual(out["00081198"]["Value"][0]["00081197"], {"vr": "US", "Value": [0xC000]})
        self.assertEqual(out["00081198"]["Value"][0]["00081155"], {"vr": "UI", "Value": ["1.2.2"]})
        self.assertEqual(out["00081199"]["Value"][0]["00081196"]["Value"], [0xB000])
        self.assertEqual(sm.response_status(stored, failed), 202)
        self.assertEqual(sm.response_status(stored, []), 202)
        # nothing stored: 400 for bad syntax only, 409 for a conflict or mixed reasons
        self.assertEqual(sm.response_status([], failed), 400)
        conflict = [sm.FailedInstance("1.2", "1.2.3", sm.PROCESSING_FAILURE)]
        self.assertEqual(sm.response_status([], conflict), 409)
        self.assertEqual(sm.response_status([], failed + conflict), 409)
        nothing = sm.build_response([], conflict, "http://h/studies/1.9")
        self.assertEqual(sorted(nothing), ["00080005", "00081198", "00081199"])
        self.assertEqual(nothing["00081199"], {"vr": "SQ"})
        ds = pydicom.Dataset.from_json(out)
        self.assertEqual(ds.FailedSOPSequence[0].FailureReason, 0xC000)

    def test_study_url(self) -> None:
        def url(s: str) -> str:
            return "U" + s
        a = sm.StoredInstance("1", "2", "S1", "x")
        b = sm.StoredInstance("1", "3", "S2", "x")
        self.assertEqual(sm.study_url_for([a, b], "T", url), "UT")
        self.assertEqual(sm.study_url_for([a, a], None, url), "US1")
        self.assertIsNone(sm.study_url_for([a, b], None, url))
        self.assertIsNone(sm.study_url_for([], None, url))

    def test_classify(self) -> None:
        self.assertEqual(sm.classify_part({}, "application/dicom"), ("application/dicom", {}))
        self.assertEqual(
            sm.classify_part(
                {"content-type": 'Application/DICOM; transfer-syntax="1.2.840.10008.1.2"'}),
            ("application/dicom", {"transfer-syntax": "1.2.840.10008.1.2"}))


class AssemblyTests(SynchronousTestCase):
    """Metadata + bulk data form -> a valid DICOM file."""

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def spool(self, data: bytes) -> str:
        fd, path = tempfile.mkstemp(dir=self.tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def split(self, ds: pydicom.Dataset) -> tuple[dict[str, Any], sm.BulkIndex, dict[str, bytes]]:
        """DICOM JSON with every bulk value moved to a spooled part."""
        values: dict[str, bytes] = {}

        def handler(elem: pydicom.DataElement) -> str:
            uri = f"http://x/bulk/{elem.tag:08X}"
            values[uri] = elem.value
            return uri

        js = ds.to_json_dict(bulk_data_threshold=16, bulk_data_element_handler=handler)
        index = sm.BulkIndex()
        for uri, data in values.items():
            index.add({"content-location": uri},
                      sm.BulkPart(self.spool(data), "application/octet-stream", {}, uri))
        return js, index, values

    def test_native(self) -> None:
        src = pydicom.dcmread(testfile("CT_small.dcm"))
        js, index, values = self.split(src)
        self.assertIn("http://x/bulk/7FE00010", values)
        out = io.BytesIO()
        sm.assemble_instance(js, index, out)
        back = pydicom.dcmread(io.BytesIO(out.getvalue()))
        self.assertEqual(back.file_meta.TransferSyntaxUID, pydicom.uid.ExplicitVRLittleEndian)
        self.assertEqual(back.file_meta.MediaStorageSOPInstanceUID, src.SOPInstanceUID)
        self.assertEqual(back.SOPInstanceUID, src.SOPInstanceUID)
        self.assertEqual(back.PatientName, src.PatientName)
        np.testing.assert_array_equal(back.pixel_array, src.pixel_array)

    def test_xml_metadata(self) -> None:
        src = pydicom.dcmread(testfile("MR_small.dcm"))
        js, index, _ = self.split(src)
        [again] = sm.metadata_datasets(sm.DICOM_XML, dataset_json_to_xml(js))
        out = io.BytesIO()
        sm.assemble_instance(again, index, out)
        back = pydicom.dcmread(io.BytesIO(out.getvalue()))
        np.testing.assert_array_equal(back.pixel_array, src.pixel_array)

    def compressed(self, name: str, media_type: str, with_ts: bool) -> None:
        src = pydicom.dcmread(testfile(name))
        nframes = int(getattr(src, "NumberOfFrames", 1) or 1)
        frames = list(generate_frames(src.PixelData, number_of_frames=nframes))
        del src.PixelData
        js, index, _ = self.split(src)
        js["7FE00010"] = {"vr": "OB", "BulkDataURI": "frames"}
        params = {"transfer-syntax": str(src.file_meta.TransferSyntaxUID)} if with_ts else {}
        for fr in frames:
            index.add({"content-location": "frames"},
                      sm.BulkPart(self.spool(fr), media_type, params, "frames"))
        out = io.BytesIO()
        sm.assemble_instance(js, index, out)
        back = pydicom.dcmread(io.BytesIO(out.getvalue()))
        orig = pydicom.dcmread(testfile(name))
        self.assertEqual(back.file_meta.TransferSyntaxUID, orig.file_meta.TransferSyntaxUID)
        np.testing.assert_array_equal(back.pixel_array, orig.pixel_array)

    def test_jpeg_baseline_media_type(self) -> None:
        self.compressed("SC_rgb_jpeg_dcmtk.dcm", "image/jpeg", with_ts=False)

    def test_rle_multiframe(self) -> None:
        self.compressed("SC_rgb_rle_2frame.dcm", "image/x-dicom-rle", with_ts=False)

    def test_jpeg2000_with_ts_param(self) -> None:
        self.compressed("MR_small_jp2klossless.dcm", "image/jp2", with_ts=True)

    def test_octet_stream_with_ts(self) -> None:
        self.compressed("MR_small_jpeg_ls_lossless.dcm", "application/octet-stream", with_ts=True)

    def test_missing_bulk(self) -> None:
        src = pydicom.dcmread(testfile("CT_small.dcm"))
        js, _, _ = self.split(src)
        with self.assertRaises(sm.StowError) as cm:
            sm.assemble_instance(js, sm.BulkIndex(), io.BytesIO())
        self.assertEqual(cm.exception.sop_instance_uid, src.SOPInstanceUID)
        self.assertEqual(cm.exception.reason, sm.CANNOT_UNDERSTAND)

    def test_missing_uids(self) -> None:
        with self.assertRaises(sm.StowError):
            sm.assemble_instance({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A"}]}},
                                 sm.BulkIndex(), io.BytesIO())

    def test_bad_json(self) -> None:
        self.assertRaises(sm.StowError, sm.metadata_datasets, sm.DICOM_JSON, b"{nope")
        self.assertRaises(sm.StowError, sm.metadata_datasets, sm.DICOM_JSON, b"[1, 2]")
        self.assertRaises(sm.StowError, sm.metadata_datasets, sm.DICOM_XML, b"<x")
        self.assertEqual(len(sm.metadata_datasets(sm.DICOM_JSON, b"[{}, {}]")), 2)
        self.assertEqual(len(sm.metadata_datasets(sm.DICOM_JSON, b"{}")), 1)

    def test_bulk_index_matching(self) -> None:
        idx = sm.BulkIndex()
        p = sm.BulkPart("/nonexistent", "application/octet-stream", {})
        idx.add({"content-location": "http://srv/bulk/1", "content-id": "<abc@x>"}, p)
        self.assertEqual(idx.find("http://srv/bulk/1"), [p])
        self.assertEqual(idx.find("bulk/1"), [p])
        self.assertEqual(idx.find("cid:abc@x"), [p])
        self.assertEqual(idx.find("bulk/2"), [])
        self.assertEqual(idx.paths(), {"/nonexistent"})
