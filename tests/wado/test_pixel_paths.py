"""Pixel paths of WADO-RS/WADO-URI that Orthanc's own suite exercises (issue 10, part B).

pydicom's shipped files and generated data only.
"""

from __future__ import annotations

import io

import numpy as np
from twisted.internet.defer import inlineCallbacks

from tests.wado.helpers import read, reference_pixels, split_multipart
from tests.wado.test_routes import EVRLE, WadoTestBase, _image, _uids


class WadoUriAliasTests(WadoTestBase):
    files = ["CT_small.dcm"]

    def wado(self, **params: str):
        from urllib.parse import urlencode

        return self.get(self.daemon.config.dicomweb.wado_root + "?" + urlencode(params))

    @inlineCallbacks
    def test_image_jpg_alias(self):
        # Orthanc accepts contentType=image/jpg for image/jpeg.
        _, _, sop = _uids("CT_small.dcm")
        response, body = yield self.wado(requestType="WADO", objectUID=sop,
                                         contentType="image/jpg")
        self.assertEqual((response.code, self.ctype(response)), (200, "image/jpeg"))
        self.assertEqual(_image(body).format, "JPEG")


def _frame(test, name: str, accept: str | None):
    """(part content type, payload) of frame 1 of ``name``."""
    response, body = yield test.get(test.url(name, "/frames/1"), accept)
    test.assertEqual(response.code, 200, (name, accept, body[:200]))
    headers, payload = split_multipart(test.ctype(response), body)[0]
    return headers["content-type"], payload


class FramePixelTests(WadoTestBase):
    files = ["examples_ybr_color.dcm", "CT_small.dcm", "ExplVR_BigEnd.dcm",
             "SC_ybr_full_422_uncompressed.dcm", "JPEG2000.dcm"]
    relabel = frozenset({"ExplVR_BigEnd.dcm"})

    @inlineCallbacks
    def test_compressed_frames_decoded_without_accept(self):
        # Orthanc and PS3.18: no Accept gives native octets, decoded from the JPEG frame
        for accept in (None, "*/*",
                       "multipart/related; type=application/octet-stream; "
                       "transfer-syntax=1.2.840.10008.1.2.1"):
            ctype, payload = yield from _frame(self, "examples_ybr_color.dcm", accept)
            self.assertEqual(ctype, f"application/octet-stream; transfer-syntax={EVRLE}")
            ref = reference_pixels("examples_ybr_color.dcm")[0]
            self.assertEqual(len(payload), ref.size)  # 640x480 RGB here: 921,600 bytes
            got = np.frombuffer(payload, np.uint8).reshape(ref.shape)
            self.assertLessEqual(np.abs(got.astype(int) - ref.astype(int)).max(), 3)

    @inlineCallbacks
    def test_octet_stream_label_follows_asked_native_syntax(self):
        ctype, payload = yield from _frame(
            self, "JPEG2000.dcm",
            "multipart/related; type=application/octet-stream; "
            "transfer-syntax=1.2.840.10008.1.2")
        self.assertEqual(ctype, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2")
        ref = reference_pixels("JPEG2000.dcm")
        self.assertEqual(payload, ref.astype(ref.dtype.newbyteorder("<")).tobytes())

    @inlineCallbacks
    def test_frames_encoded_in_jpeg_family(self):
        from pylibjpeg import decode

        ref = reference_pixels("CT_small.dcm")  # 16-bit signed CT
        for syntax in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
            ctype, payload = yield from _frame(
                self, "CT_small.dcm",
                f"multipart/related; type=image/jpeg; transfer-syntax={syntax}")
            self.assertEqual(ctype, f"image/jpeg; transfer-syntax={syntax}")
            self.assertEqual(len(payload) % 2, 0)
            np.testing.assert_array_equal(decode(payload).view(ref.dtype), ref)
        # lossy processes need 8 (4.50) or 12 (4.51) bits: CT_small's 16 bits are refused
        response, _ = yield self.get(
            self.url("CT_small.dcm", "/frames/1"),
            "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50")
        self.assertEqual(response.code, 406)
        ycc = reference_pixels("examples_ybr_color.dcm")[0]
        for syntax, marker in (("1.2.840.10008.1.2.4.50", b"\xff\xc0"),
                               ("1.2.840.10008.1.2.4.51", b"\xff\xc1")):
            # from JPEG-stored data too: decoded, then encoded in the asked process
            ctype, payload = yield from _frame(
                self, "examples_ybr_color.dcm",
                f"multipart/related; type=image/jpeg; transfer-syntax={syntax}")
            self.assertEqual(ctype, f"image/jpeg; transfer-syntax={syntax}")
            self.assertIn(marker, payload)
            if syntax.endswith(".51"):
                continue
            got = np.asarray(_image(payload))
            self.assertEqual(got.shape, ycc.shape)
            self.assertLess(np.abs(got.astype(int) - ycc.astype(int)).mean(), 4)

    @inlineCallbacks
    def test_frames_encoded_in_other_lossless_syntaxes(self):
        from pydicom.encaps import encapsulate

        ref = reference_pixels("CT_small.dcm")
        for media, syntax in (("image/jls", "1.2.840.10008.1.2.4.80"),
                              ("image/jp2", "1.2.840.10008.1.2.4.90"),
                              ("image/x-dicom-rle", "1.2.840.10008.1.2.5")):
            ctype, payload = yield from _frame(self, "CT_small.dcm",
                                               f"multipart/related; type={media}")
            self.assertEqual(ctype, f"{media}; transfer-syntax={syntax}")
            ds = read("CT_small.dcm")
            ds.file_meta.TransferSyntaxUID = syntax
            ds.PixelData = encapsulate([payload])
            np.testing.assert_array_equal(ds.pixel_array, ref, err_msg=syntax)

    @inlineCallbacks
    def test_big_endian_frames_are_little_endian_octets(self):
        # ExplVR_BigEnd.dcm: 8-bit RGB, OB, planar configuration 1: the stored octets are
        # already in little endian order and keep their planar layout (as the metadata says)
        ds = read("ExplVR_BigEnd.dcm")
        ctype, payload = yield from _frame(self, "ExplVR_BigEnd.dcm", None)
        self.assertEqual(ctype, f"application/octet-stream; transfer-syntax={EVRLE}")
        self.assertEqual(payload, ds.PixelData[:int(ds.Rows) * int(ds.Columns) * 3])

    @inlineCallbacks
    def test_big_endian_words_are_swapped(self):
        # 16-bit OW big endian (generated from MR_small_bigendian's pixels, own UIDs)
        from pydicom.uid import generate_uid

        ds = read("MR_small_bigendian.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out = io.BytesIO()
        ds.save_as(out)
        yield self.daemon.store.ingest_bytes(out.getvalue())
        self.uids["be16"] = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        ctype, payload = yield from _frame(self, "be16", None)
        self.assertEqual(payload, ds.pixel_array.astype("<i2").tobytes())

    @inlineCallbacks
    def test_ybr_full_422_uncompressed(self):
        name = "SC_ybr_full_422_uncompressed.dcm"
        ds = read(name)
        ctype, payload = yield from _frame(self, name, None)
        # native octets as stored: two samples per pixel on average (PS3.3 C.7.6.3.1.2)
        self.assertEqual(payload, ds.PixelData[:int(ds.Rows) * int(ds.Columns) * 2])
        response, body = yield self.get(self.url(name, "/rendered"), "image/png")
        self.assertEqual(response.code, 200)
        image = np.asarray(_image(body).convert("RGB"))
        ref = reference_pixels(name)  # pydicom converts to RGB
        self.assertEqual(image.shape, ref.shape)
        self.assertLessEqual(np.abs(image.astype(int) - ref.astype(int)).max(), 2)


def _raw_dataset(name: str) -> tuple[bytes, object]:
    """``name`` as a raw Implicit VR Little Endian data set: no preamble, no file meta."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import generate_uid

    ds = read(name)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    return buf.getvalue(), ds


class RawDataSetTests(WadoTestBase):
    files: list[str] = []

    @inlineCallbacks
    def test_raw_implicit_data_set_is_stored_as_part10(self):
        # Orthanc stores a data set sent without preamble/meta; frames then answer as usual
        data, ds = _raw_dataset("CT_small.dcm")
        self.assertNotEqual(data[128:132], b"DICM")
        result = yield self.daemon.store.ingest_bytes(data)
        self.assertEqual(result.transfer_syntax, "1.2.840.10008.1.2")
        self.uids["raw"] = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        ctype, payload = yield from _frame(
            self, "raw", "multipart/related; type=application/octet-stream; "
                         "transfer-syntax=1.2.840.10008.1.2")
        self.assertEqual(payload, reference_pixels("CT_small.dcm").astype("<i2").tobytes())
        response, body = yield self.get(self.url("raw"),
                                        "multipart/related; type=application/dicom; "
                                        "transfer-syntax=*")
        stored = split_multipart(self.ctype(response), body)[0][1]
        self.assertEqual(stored[128:132], b"DICM")

    @inlineCallbacks
    def test_garbage_is_still_refused(self):
        from dwdaemon.store.ingest import IngestError

        with self.assertRaises(IngestError):
            yield self.daemon.store.ingest_bytes(b"\x01" * 400)


def _dcm(data: bytes):
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


class InstanceSyntaxTests(WadoTestBase):
    files = ["MR_small_implicit.dcm", "ExplVR_BigEnd.dcm", "CT_small.dcm",
             "examples_ybr_color.dcm"]
    relabel = frozenset({"ExplVR_BigEnd.dcm"})

    @inlineCallbacks
    def _instance(self, name: str, accept: str | None) -> object:
        response, body = yield self.get(self.url(name), accept)
        self.assertEqual(response.code, 200, (name, accept, body[:200]))
        headers, payload = split_multipart(self.ctype(response), body)[0]
        return headers["content-type"], payload

    @inlineCallbacks
    def test_implicit_and_big_endian_sent_as_explicit_le(self):
        # PS3.18 8.7.3 Table 8.7.3-2: neither syntax is sent by Web Services, even with "*"
        for name in ("MR_small_implicit.dcm", "ExplVR_BigEnd.dcm"):
            ref = read(name)
            for accept in (None, "multipart/related; type=application/dicom; transfer-syntax=*"):
                ctype, payload = yield self._instance(name, accept)
                self.assertEqual(ctype, f"application/dicom; transfer-syntax={EVRLE}")
                ds = _dcm(payload)
                self.assertEqual(ds.file_meta.TransferSyntaxUID, EVRLE)
                self.assertEqual(ds.PatientName, ref.PatientName)
                self.assertEqual(ds.get("PlanarConfiguration"), ref.get("PlanarConfiguration"))
                np.testing.assert_array_equal(ds.pixel_array, ref.pixel_array, err_msg=name)

    def test_reencode_streams_pixel_data_by_chunks(self):
        # the pixel values are copied chunk by chunk: never the whole value at once
        import json

        from dwdaemon.dicom import reencode
        from tests.wado.helpers import path

        row_bulk = None
        for name in ("MR_small_bigendian.dcm",):
            from dwdaemon.store.ingest import analyse

            analysis = analyse(path(name))
            row_bulk = json.loads(json.dumps(analysis.bulk))["7FE00010"]
            offset, length, vr = row_bulk[0], row_bulk[1], row_bulk[2]
            chunks = list(reencode.explicit_le_chunks(path(name), "1.2.840.10008.1.2.2",
                                                      offset, length, vr, chunk=1024))
            self.assertTrue(all(len(c) <= 1024 for c in chunks[2:]))
            ds = _dcm(b"".join(chunks))
            np.testing.assert_array_equal(ds.pixel_array, reference_pixels(name))

    @inlineCallbacks
    def test_compressed_stays_compressed_with_star(self):
        ctype, payload = yield self._instance(
            "examples_ybr_color.dcm",
            "multipart/related; type=application/dicom; transfer-syntax=*")
        self.assertEqual(ctype, "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50")

    @inlineCallbacks
    def test_bare_multipart_related_means_application_dicom(self):
        ctype, payload = yield self._instance("CT_small.dcm", "multipart/related")
        self.assertEqual(ctype, f"application/dicom; transfer-syntax={EVRLE}")

    @inlineCallbacks
    def test_instance_transcoded_to_jpeg_lossless(self):
        for name in ("CT_small.dcm", "examples_ybr_color.dcm"):
            ctype, payload = yield self._instance(
                name, "multipart/related; type=application/dicom; "
                      "transfer-syntax=1.2.840.10008.1.2.4.57")
            ds = _dcm(payload)
            self.assertEqual(ds.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.57")
            ref = reference_pixels(name)
            if name == "CT_small.dcm":
                np.testing.assert_array_equal(ds.pixel_array, ref)
            else:  # lossless from the decoded (RGB) JPEG baseline frames
                self.assertEqual(ds.PhotometricInterpretation, "RGB")
                self.assertEqual(ds.pixel_array.shape, ref.shape)
                self.assertLessEqual(
                    np.abs(ds.pixel_array.astype(int) - ref.astype(int)).max(), 3)
        ctype, payload = yield self._instance(
            "CT_small.dcm", "multipart/related; type=application/dicom; "
                            "transfer-syntax=1.2.840.10008.1.2.4.70")
        np.testing.assert_array_equal(_dcm(payload).pixel_array,
                                      reference_pixels("CT_small.dcm"))


def _linear(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.2.1 (LINEAR)."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 255.0
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0


def _linear_exact(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.3.2 (LINEAR_EXACT)."""
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return 255.0
    return ((x - c) / w + 0.5) * 255.0


class WindowingTests(WadoTestBase):
    """A generated 2x2, 4-frame image with per-frame rescale and no Pixel Representation
    (a Type 1 element some files omit; 0 is assumed, as Orthanc does)."""

    files: list[str] = []

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        from pydicom import dcmread
        from pydicom.dataset import Dataset

        from tests.wado.helpers import make_image

        pixels = np.tile(np.array([[0x00, 0x10], [0x20, 0x30]], np.uint16), (4, 1, 1))
        ds = dcmread(io.BytesIO(make_image(pixels, frames=4)))
        del ds.PixelRepresentation
        groups = []
        for intercept, slope in ((0, 1), (100, 1), (0, 2), (100, 2)):
            item, transform = Dataset(), Dataset()
            transform.RescaleIntercept, transform.RescaleSlope = intercept, slope
            item.PixelValueTransformationSequence = [transform]
            groups.append(item)
        ds.PerFrameFunctionalGroupsSequence = groups
        out = io.BytesIO()
        ds.save_as(out)
        yield self.daemon.store.ingest_bytes(out.getvalue())
        self.uids["mf"] = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)

    @inlineCallbacks
    def _pixels(self, frame: int, window: str) -> object:
        response, body = yield self.get(
            self.url("mf", f"/frames/{frame}/rendered?window={window}"), "image/png")
        self.assertEqual(response.code, 200, body[:200])
        return np.asarray(_image(body)).astype(float)

    @inlineCallbacks
    def test_voi_functions_follow_ps33(self):
        stored = np.array([[0x00, 0x10], [0x20, 0x30]], float)
        for frame, (intercept, slope) in enumerate(((0, 1), (100, 1), (0, 2), (100, 2)), 1):
            got = yield self._pixels(frame, "127,256,linear")
            want = np.vectorize(_linear)(stored * slope + intercept, 127, 256)
            self.assertLessEqual(np.abs(got - want).max(), 1, frame)
        got = yield self._pixels(1, "0,256,linear-exact")
        # 127.5 at x = c: PS3.3's LINEAR_EXACT keeps the +0.5 (Orthanc's test omits it)
        want = np.vectorize(_linear_exact)(stored, 0, 256)
        self.assertLessEqual(np.abs(got - want).max(), 1)
        got = yield self._pixels(1, "127,256,sigmoid")
        want = 255.0 / (1 + np.exp(-4 * (stored - 127) / 256))
        self.assertLessEqual(np.abs(got - want).max(), 1)


class MetadataAcceptTests(WadoTestBase):
    files = ["CT_small.dcm"]

    @inlineCallbacks
    def test_browser_and_list_accepts_get_json(self):
        # Orthanc's suite (test_issue_216, test_multiple_mime_accept_wado_rs)
        for accept in ("image/webp, */*;q=0.8, text/html, application/xhtml+xml, "
                       "application/xml;q=0.9",
                       "text/html, application/xhtml+xml, application/xml;q=0.9, image/webp, "
                       "*/*;q=0.8",
                       "text/html, image/gif, image/jpeg, */*; q=.2, */*; q=.2",
                       "application/json, application/dicom+xml",
                       "application/dicom+xml, application/json",
                       "toto, application/dicom+json", "application/json, tata"):
            response, body = yield self.get(self.url("CT_small.dcm", "/metadata", "study"),
                                            accept)
            self.assertEqual((response.code, self.ctype(response)),
                             (200, "application/dicom+json"), accept)
        response, _ = yield self.get(self.url("CT_small.dcm", "/metadata", "study"),
                                     "multipart/related;type=application/dicom+xml")
        self.assertTrue(self.ctype(response).startswith("multipart/related"))
        for accept in ("toto", "toto, tata"):
            response, _ = yield self.get(self.url("CT_small.dcm", "/metadata", "study"), accept)
            self.assertEqual(response.code, 406, accept)


class RenderedGroupTests(WadoTestBase):
    files: list[str] = []

    @inlineCallbacks
    def test_study_and_series_rendered_is_the_first_instance(self):
        # Orthanc's test_rendered_studies_series: the same bytes as the instance's rendered
        from pydicom.uid import generate_uid

        from tests.wado.helpers import make_image

        study, series = generate_uid(), generate_uid()
        sops = []
        for number in (2, 1, 3):
            data = make_image(np.full((8, 8), number * 100, np.uint16), study=study,
                              series=series, InstanceNumber=number, WindowCenter=150,
                              WindowWidth=400)
            result = yield self.daemon.store.ingest_bytes(data)
            sops.append((number, result.sop_uid, result.ids))
        first = next(s for n, s, _ in sops if n == 1)
        base = f"{self.dw}/studies/{study}"
        response, instance = yield self.get(f"{base}/series/{series}/instances/{first}/rendered")
        for url in (f"{base}/series/{series}/rendered", f"{base}/rendered"):
            response, body = yield self.get(url)
            self.assertEqual(self.ctype(response), "image/jpeg")
            self.assertEqual(body, instance, url)

    @inlineCallbacks
    def test_core_rendered_route_matches_wado_uri(self):
        from tests.wado.helpers import make_image

        data = make_image(np.arange(64, dtype=np.uint16).reshape(8, 8) * 10,
                          WindowCenter=300, WindowWidth=400)
        result = yield self.daemon.store.ingest_bytes(data)
        public_id = result.ids.instance
        wado = self.daemon.config.dicomweb.wado_root
        response, png = yield self.get(f"/instances/{public_id}/rendered")
        self.assertEqual(self.ctype(response), "image/png")  # Orthanc's default
        _, uri_png = yield self.get(f"{wado}?requestType=WADO&objectUID={result.sop_uid}"
                                    "&contentType=image/png")
        self.assertEqual(png, uri_png)
        response, jpeg = yield self.get(f"/instances/{public_id}/rendered", "image/jpeg")
        self.assertEqual(self.ctype(response), "image/jpeg")
        _, uri_jpeg = yield self.get(f"{wado}?requestType=WADO&objectUID={result.sop_uid}"
                                     "&contentType=image/jpg")
        self.assertEqual(jpeg, uri_jpeg)
        response, _ = yield self.get("/instances/nope/rendered")
        self.assertEqual(response.code, 404)
        response, _ = yield self.get(f"/instances/{public_id}/frames/1/rendered")
        self.assertEqual(response.code, 400)  # frames are numbered from 0 in the core API


class Rgb48Tests(WadoTestBase):
    """Multi-frame 16-bit RGB, native and RLE (Orthanc's test_multiframe_rgb48_raw/rle,
    whose files are not public: generated here)."""

    files: list[str] = []

    @inlineCallbacks
    def test_rendered_frame_of_rgb48(self):
        from pydicom import dcmread
        from pydicom.uid import RLELossless, generate_uid

        from tests.wado.helpers import make_image

        y, x = np.mgrid[0:30, 0:40]
        pixels = np.stack([np.stack([x * 1600, y * 2200, np.full_like(x, k * 30000)], -1)
                           for k in range(3)]).astype(np.uint16)
        raw = make_image(pixels, photometric="RGB", frames=3)
        ds = dcmread(io.BytesIO(raw))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.compress(RLELossless, generate_instance_uid=False)
        out = io.BytesIO()
        ds.save_as(out)
        for data in (raw, out.getvalue()):
            result = yield self.daemon.store.ingest_bytes(data)
            url = (f"{self.dw}/studies/{result.study_uid}/series/{result.series_uid}"
                   f"/instances/{result.sop_uid}/frames/3/rendered")
            response, body = yield self.get(url)
            self.assertEqual(response.code, 200, result.transfer_syntax)
            image = _image(body)
            self.assertEqual((image.format, image.size), ("JPEG", (40, 30)))
            want = (pixels[2] >> 8).astype(np.uint8)
            got = np.asarray(image.convert("RGB")).astype(int)
            self.assertLess(np.abs(got - want).mean(), 6)


class MetaUidTests(WadoTestBase):
    files: list[str] = []

    @inlineCallbacks
    def test_sop_class_only_in_file_meta(self):
        # POST /instances stores a file whose data set lacks SOPClassUID (the meta has it);
        # the index takes the meta's, the stored DICOM JSON stays the data set's own
        import json

        from pydicom import dcmread

        from tests.wado.helpers import make_image

        ds = dcmread(io.BytesIO(make_image(np.zeros((4, 4), np.uint16))))
        del ds.SOPClassUID
        out = io.BytesIO()
        ds.save_as(out)
        result = yield self.daemon.store.ingest_bytes(out.getvalue(), uids_from_meta=True)
        self.assertEqual(result.sop_class_uid, ds.file_meta.MediaStorageSOPClassUID)
        row = yield self.daemon.store.instance(result.ids.instance)
        self.assertNotIn("00080016", json.loads(row.metadata))


class RenderedFrameTests(WadoTestBase):
    files = ["examples_ybr_color.dcm", "CT_small.dcm"]

    @inlineCallbacks
    def test_first_frame_is_the_default_rendering(self):
        # Orthanc's test_rendered (its multi-frame file is not public: a shipped one here)
        for name, count in (("examples_ybr_color.dcm", 30), ("CT_small.dcm", 1)):
            _, default = yield self.get(self.url(name, "/rendered"))
            response, first = yield self.get(self.url(name, "/frames/1/rendered"))
            self.assertEqual(response.code, 200)
            self.assertEqual(first, default, name)
            response, last = yield self.get(self.url(name, f"/frames/{count}/rendered"))
            self.assertEqual(response.code, 200)
            for bad in (0, count + 1):
                response, _ = yield self.get(self.url(name, f"/frames/{bad}/rendered"))
                self.assertEqual(response.code, 400, (name, bad))
