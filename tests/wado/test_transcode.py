"""Transfer-syntax conversion on pydicom's shipped files: pixel equality after round trips."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from twisted.trial import unittest

from dwdaemon.dicom import transcode
from tests.wado.helpers import path, read, reference_pixels

# Every transfer syntax the shipped files cover, with colour, multi-frame, signed, 32-bit.
LOSSLESS_SOURCES = [
    "CT_small.dcm",                    # explicit LE, signed 16-bit
    "MR_small_implicit.dcm",           # implicit LE
    "MR_small_bigendian.dcm",          # explicit big endian, signed 16-bit
    "ExplVR_BigEnd.dcm",               # big endian RGB, planar configuration 1
    "image_dfl.dcm",                   # deflated
    "MR_small_RLE.dcm",                # RLE
    "SC_rgb_rle_16bit_2frame.dcm",     # RLE colour multi-frame
    "MR_small_jpeg_ls_lossless.dcm",   # JPEG-LS lossless
    "MR_small_jp2klossless.dcm",       # J2K lossless
    "SC_rgb_jpeg_gdcm.dcm",            # JPEG lossless SV1 colour
    "rtdose.dcm",                      # RT dose, 32-bit multi-frame
    "rtdose_expb.dcm",                 # RT dose big endian
    "examples_palette.dcm",            # palette colour
    "liver_1frame.dcm",                # 1-bit
]
LOSSY_SOURCES = [
    "JPGExtended.dcm",                 # JPEG extended 12-bit
    "SC_rgb_jpeg_dcmtk.dcm",           # JPEG baseline YBR_FULL
    "examples_ybr_color.dcm",          # JPEG baseline YBR_FULL_422, 30 frames
    "JPEGLSNearLossless_16.dcm",       # JPEG-LS near lossless
    "693_J2KI.dcm",                    # J2K (lossy)
    "SC_ybr_full_422_uncompressed.dcm",
]


def _decode(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


class DecompressTests(unittest.TestCase):
    """Everything decodable becomes Explicit VR Little Endian with the same pixels."""

    def test_lossless_sources_keep_pixels(self) -> None:
        for name in LOSSLESS_SOURCES:
            out = _decode(transcode.transcode(path(name), ExplicitVRLittleEndian))
            self.assertEqual(out.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian, name)
            self.assertEqual(out.SOPInstanceUID, read(name).SOPInstanceUID, name)
            np.testing.assert_array_equal(out.pixel_array, reference_pixels(name), err_msg=name)

    def test_lossy_sources_decode_to_rgb_or_grey(self) -> None:
        for name in LOSSY_SOURCES:
            out = _decode(transcode.transcode(path(name), ExplicitVRLittleEndian))
            self.assertFalse(out.file_meta.TransferSyntaxUID.is_compressed, name)
            ref = reference_pixels(name)
            self.assertEqual(out.pixel_array.shape, ref.shape, name)
            if ref.ndim == 2:
                np.testing.assert_array_equal(out.pixel_array, ref, err_msg=name)
            else:
                self.assertIn(out.PhotometricInterpretation,
                              ("RGB", "YBR_FULL", "YBR_FULL_422"), name)

    def test_implicit_and_deflated_targets(self) -> None:
        for target in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
            out = _decode(transcode.transcode(path("MR_small_RLE.dcm"), target))
            self.assertEqual(out.file_meta.TransferSyntaxUID, target)
            np.testing.assert_array_equal(out.pixel_array, reference_pixels("MR_small.dcm"))

    def test_bytes_source_and_same_syntax(self) -> None:
        with open(path("CT_small.dcm"), "rb") as f:
            data = f.read()
        self.assertEqual(transcode.transcode(data, ExplicitVRLittleEndian), data)

    def test_big_endian_other_binary_swapped(self) -> None:
        out = _decode(transcode.transcode(path("MR_small_bigendian.dcm"), ExplicitVRLittleEndian))
        ref = read("MR_small.dcm")
        for elem in ref:
            if elem.keyword in ("PixelData",) or elem.VR == "SQ":
                continue
            if elem.keyword and elem.keyword in out:
                self.assertEqual(out[elem.tag].value, elem.value, elem.keyword)


class CompressTests(unittest.TestCase):
    """Lossless encoders: RLE, JPEG-LS lossless, J2K lossless; pixels survive."""

    def test_round_trips(self) -> None:
        sources = ["CT_small.dcm", "MR_small_bigendian.dcm", "SC_rgb_rle_2frame.dcm",
                   "examples_rgb_color.dcm", "MR_small_jpeg_ls_lossless.dcm"]
        for target in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
            for name in sources:
                out = _decode(transcode.transcode(path(name), target))
                self.assertEqual(out.file_meta.TransferSyntaxUID, target, (name, target))
                np.testing.assert_array_equal(out.pixel_array, reference_pixels(name),
                                              err_msg=f"{name} -> {target.name}")

    def test_subsampled_ybr_becomes_rgb(self) -> None:
        out = _decode(transcode.transcode(path("SC_ybr_full_422_uncompressed.dcm"), RLELossless))
        self.assertEqual(out.PhotometricInterpretation, "RGB")
        self.assertEqual(out.pixel_array.shape, (100, 100, 3))

    def test_cannot(self) -> None:
        # JPEG baseline is lossy: we never encode to it.
        with self.assertRaises(transcode.TranscodeError):
            transcode.transcode(path("CT_small.dcm"), "1.2.840.10008.1.2.4.50")
        # 32-bit samples exceed the JPEG-LS and J2K encoders.
        with self.assertRaises(transcode.TranscodeError):
            transcode.transcode(path("rtdose.dcm"), JPEGLSLossless)
        with self.assertRaises(transcode.TranscodeError):
            transcode.transcode(path("rtdose.dcm"), JPEG2000Lossless)

    def test_capabilities(self) -> None:
        self.assertTrue(transcode.can_decode("1.2.840.10008.1.2.4.50"))
        self.assertTrue(transcode.can_decode("1.2.840.10008.1.2.4.80"))
        self.assertTrue(transcode.can_decode("1.2.840.10008.1.2.4.90"))
        self.assertTrue(transcode.can_decode("1.2.840.10008.1.2.5"))
        self.assertTrue(transcode.can_decode(ExplicitVRLittleEndian))
        self.assertFalse(transcode.can_decode("1.2.840.10008.1.2.4.100"))  # MPEG2
        self.assertTrue(transcode.can_transcode("1.2.840.10008.1.2.4.50", RLELossless))
        self.assertFalse(transcode.can_transcode("1.2.840.10008.1.2.4.100",
                                                 ExplicitVRLittleEndian))
        self.assertTrue(transcode.can_transcode("1.2.840.10008.1.2.4.100",
                                                "1.2.840.10008.1.2.4.100"))
        self.assertTrue(transcode.can_transcode("1.2.840.10008.1.2.4.100",
                                                ExplicitVRLittleEndian, has_pixels=False))
        self.assertFalse(transcode.can_transcode(ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.81"))
        # the JPEG processes are written by libjpeg-turbo; 4.50 only for 8-bit samples
        self.assertTrue(transcode.can_transcode(ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.51"))
        self.assertFalse(transcode.encoder_accepts("1.2.840.10008.1.2.4.50", 16, 12))
        self.assertTrue(transcode.encoder_accepts("1.2.840.10008.1.2.4.70", 16, 16))

    def test_no_pixels(self) -> None:
        out = _decode(transcode.transcode(path("test-SR.dcm"), ImplicitVRLittleEndian))
        self.assertEqual(out.file_meta.TransferSyntaxUID, ImplicitVRLittleEndian)
        self.assertEqual(out.SOPInstanceUID, read("test-SR.dcm").SOPInstanceUID)


class FrameDecodeTests(unittest.TestCase):
    """decode_frame decodes one frame equal to pydicom's full decode."""

    def test_frames(self) -> None:
        for name in ("examples_ybr_color.dcm", "SC_rgb_rle_16bit_2frame.dcm", "rtdose.dcm",
                     "rtdose_expb.dcm", "CT_small.dcm", "JPGExtended.dcm"):
            ref = reference_pixels(name)
            frames = ref if read(name).get("NumberOfFrames", 1) not in (None, 1, "1") else [ref]
            for index in (0, len(frames) - 1):
                arr, header = transcode.decode_frame(path(name), index)
                np.testing.assert_array_equal(arr, frames[index], err_msg=f"{name}[{index}]")
                self.assertIn("Rows", header)
                self.assertNotIn("PixelData", header)

    def test_native_bytes(self) -> None:
        arr, _ = transcode.decode_frame(path("MR_small_bigendian.dcm"), 0)
        data = transcode.frame_native_bytes(arr, 16)
        with open(path("MR_small.dcm"), "rb") as f:
            self.assertIn(data, f.read())


class StoredFrameTests(unittest.TestCase):
    """decode_stored_frame: frames decoded from their stored bytes + a JSON-built header."""

    def _header_and_frames(self, name: str):
        from pydicom.encaps import generate_frames

        from dwdaemon.dicom.jsonmodel import dataset_to_json

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = transcode.header_from_json(
                dataset_to_json(pydicom.dcmread(path(name), defer_size=1024)).dataset)
            full = pydicom.dcmread(path(name))
        count = int(full.get("NumberOfFrames", 1) or 1)
        if full.file_meta.TransferSyntaxUID.is_compressed:
            frames = list(generate_frames(full.PixelData, number_of_frames=count))
        else:
            size = len(full.PixelData) // count
            frames = [full.PixelData[i * size:(i + 1) * size] for i in range(count)]
        return header, frames, full.file_meta.TransferSyntaxUID

    def test_exact_decodes(self) -> None:
        for name in ("CT_small.dcm", "examples_rgb_color.dcm", "SC_rgb_rle_2frame.dcm",
                     "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm",
                     "SC_rgb_jpeg_gdcm.dcm", "examples_ybr_color.dcm", "rtdose.dcm"):
            header, frames, syntax = self._header_and_frames(name)
            ref = reference_pixels(name)
            last = ref[-1] if len(frames) > 1 else ref
            arr = transcode.decode_stored_frame(frames[-1], header, syntax, exact=True)
            self.assertIsNotNone(arr, name)
            np.testing.assert_array_equal(arr, last, err_msg=name)

    def test_pillow_jpeg_close(self) -> None:
        header, frames, syntax = self._header_and_frames("examples_ybr_color.dcm")
        arr = transcode.decode_stored_frame(frames[0], header, syntax)
        ref = reference_pixels("examples_ybr_color.dcm")[0]
        self.assertLessEqual(int(np.abs(arr.astype(int) - ref.astype(int)).max()), 4)

    def test_needs_full_dataset(self) -> None:
        header, frames, syntax = self._header_and_frames("examples_palette.dcm")
        self.assertIsNone(header)  # palette LUT data: render from the file
        header, frames, syntax = self._header_and_frames("MR_small_bigendian.dcm")
        self.assertIsNone(transcode.decode_stored_frame(frames[0], header, syntax))
