"""Ingest analysis on pydicom's shipped files: parse once, JSON model, frames, bulk offsets."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
from pydicom import dcmread
from pydicom.encaps import generate_frames
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.jsonmodel import BULK_PLACEHOLDER, resolve_bulk_uris
from dwdaemon.store.ingest import IngestError, analyse
from tests.support import charset_files, shipped_files, testdata

VARIED = [
    "CT_small.dcm",  # explicit little endian
    "MR_small_bigendian.dcm",  # explicit big endian
    "MR_small_implicit.dcm",  # implicit little endian
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",  # RLE, multi-frame colour
    "examples_ybr_color.dcm",  # 30-frame JPEG baseline, YBR
    "waveform_ecg.dcm",  # waveform
    "test-SR.dcm",  # structured report
    "rtdose.dcm",  # RT dose, multi-frame
    "rtplan.dcm",  # RT, no pixels
    "image_dfl.dcm",  # deflated
    "JPEG-lossy.dcm",
]


def _frame_bytes(path: str, analysis, index: int) -> bytes:
    with open(path, "rb") as fp:
        out = b""
        for offset, length in analysis.frames.frame_ranges(index):
            fp.seek(offset)
            out += fp.read(length)
        return out


class AnalyseTests(SynchronousTestCase):
    def setUp(self) -> None:
        warnings.simplefilter("ignore")
        self.addCleanup(warnings.resetwarnings)

    def test_varied_files_are_accepted(self) -> None:
        for name in VARIED:
            analysis = analyse(testdata(name))
            ds = dcmread(testdata(name))
            self.assertEqual(analysis.sop_uid, ds.SOPInstanceUID, name)
            self.assertEqual(analysis.transfer_syntax, ds.file_meta.TransferSyntaxUID, name)
            json.dumps(analysis.metadata)  # serialisable

    def test_native_frames_are_byte_slices_of_pixel_data(self) -> None:
        for name in ("CT_small.dcm", "rtdose.dcm", "MR_small_implicit.dcm", "SC_rgb_small_odd.dcm"):
            path = testdata(name)
            analysis = analyse(path)
            ds = dcmread(path)
            self.assertEqual(analysis.frames.kind, "native", name)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            self.assertEqual(analysis.frames.count, frames)
            size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
            for i in (0, frames - 1):
                self.assertEqual(_frame_bytes(path, analysis, i),
                                 ds.PixelData[i * size:(i + 1) * size], name)

    def test_encapsulated_frames_match_pydicom(self) -> None:
        for name in ("SC_rgb_rle_2frame.dcm", "JPEG2000.dcm", "examples_ybr_color.dcm",
                     "rtdose_rle.dcm", "MR_small_jpeg_ls_lossless.dcm"):
            path = testdata(name)
            analysis = analyse(path)
            ds = dcmread(path)
            self.assertEqual(analysis.frames.kind, "encapsulated", name)
            nframes = int(ds.get("NumberOfFrames", 1) or 1)
            expected = list(generate_frames(ds.PixelData, number_of_frames=nframes))
            self.assertEqual(analysis.frames.count, len(expected))
            for i, frame in enumerate(expected):
                self.assertEqual(_frame_bytes(path, analysis, i), frame, f"{name} frame {i}")

    def test_bulk_locations_point_at_values(self) -> None:
        path = testdata("CT_small.dcm")
        analysis = analyse(path)
        ds = dcmread(path)
        self.assertEqual(analysis.metadata["7FE00010"]["BulkDataURI"],
                         BULK_PLACEHOLDER + "7FE00010")
        offset, length = analysis.bulk["7FE00010"][:2]
        with open(path, "rb") as fp:
            fp.seek(offset)
            self.assertEqual(fp.read(length), ds.PixelData)

    def test_json_model_values(self) -> None:
        analysis = analyse(testdata("CT_small.dcm"))
        md = analysis.metadata
        self.assertEqual(md["00100010"], {"vr": "PN",
                                          "Value": [{"Alphabetic": "CompressedSamples^CT1"}]})
        self.assertEqual(md["00200013"]["Value"], [1])  # IS as a number
        self.assertNotIn("00020010", md)  # no file meta in the dataset
        url = "http://h/dicom-web/studies/1/series/2/instances/3"
        text = resolve_bulk_uris(json.dumps(md), url)
        self.assertIn(url + "/bulk/7fe00010", text)

    def test_charset_decoded_to_utf8(self) -> None:
        path = next(p for p in charset_files() if p.endswith("chrRuss.dcm"))
        analysis = analyse(path)
        self.assertEqual(analysis.metadata["00080005"]["Value"], ["ISO_IR 144"])  # as stored
        name = analysis.metadata["00100010"]["Value"][0]["Alphabetic"]
        self.assertEqual(name, str(dcmread(path).PatientName))
        self.assertIn("Люкceмбypг", name)

    def test_refusals(self) -> None:
        cases = {
            "no_meta.dcm": "not a DICOM",
            "MR_truncated.dcm": "truncated",
            "nested_priv_SQ.dcm": "SOPInstanceUID is missing",
        }
        for name, message in cases.items():
            with self.assertRaises(IngestError) as ctx:
                analyse(testdata(name))
            self.assertIn(message, str(ctx.exception), name)

    def test_garbage_and_empty(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as fp:
            fp.write(os.urandom(4096))
        self.assertRaises(IngestError, analyse, path)
        with open(path, "wb"):
            pass
        self.assertRaises(IngestError, analyse, path)

    def test_whole_corpus_never_crashes(self) -> None:
        accepted = 0
        for path in shipped_files():
            try:
                analysis = analyse(path)
            except IngestError:
                continue
            accepted += 1
            json.dumps(analysis.metadata)
            if analysis.frames.kind == "native" and analysis.frames.count:
                ds = dcmread(path)
                arr_bytes = _frame_bytes(path, analysis, 0)
                self.assertEqual(len(arr_bytes), analysis.frames.frame_length)
                del ds
        self.assertGreater(accepted, 50)
        self.assertIsNotNone(np)
