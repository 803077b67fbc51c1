"""WADO-RS and WADO-URI routes against a daemon on a loopback port, with pydicom's files."""

from __future__ import annotations

import dataclasses
import io
import json
import warnings

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from dwdaemon.dicom import render, transcode
from tests.support import start_daemon
from tests.wado.helpers import (
    make_image,
    nested_bulk_file,
    path,
    read,
    reference_pixels,
    split_multipart,
)

EVRLE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
FILES = ["CT_small.dcm", "SC_rgb_rle.dcm", "examples_ybr_color.dcm", "rtdose.dcm",
         "MR_small_bigendian.dcm", "JPEG2000.dcm", "examples_palette.dcm", "test-SR.dcm",
         "image_dfl.dcm", "MR_small_jpeg_ls_lossless.dcm", "waveform_ecg.dcm",
         "liver_1frame.dcm"]


def _dcm(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def _uids(name: str) -> tuple[str, str, str]:
    ds = read(name)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _relabelled(name: str) -> tuple[bytes, tuple[str, str, str]]:
    """The file with new study/series/SOP UIDs (the MR_small variants share theirs)."""
    from pydicom.uid import generate_uid

    ds = read(name)
    uids = (generate_uid(), generate_uid(), generate_uid())
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = uids
    ds.file_meta.MediaStorageSOPInstanceUID = uids[2]
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue(), uids


class WadoTestBase(TestCase):
    files = FILES
    relabel = frozenset({"MR_small_jpeg_ls_lossless.dcm"})

    @inlineCallbacks
    def setUp(self):
        self.daemon = start_daemon(self)
        self.uids: dict[str, tuple[str, str, str]] = {}
        for name in self.files:
            if name in self.relabel:
                data, self.uids[name] = _relabelled(name)
            else:
                with open(path(name), "rb") as f:
                    data = f.read()
                self.uids[name] = _uids(name)
            yield self.daemon.store.ingest_bytes(data)
        self.dw = self.daemon.config.dicomweb.root.rstrip("/")

    def url(self, name: str, suffix: str = "", level: str = "instance") -> str:
        study, series, sop = self.uids.get(name) or _uids(name)
        out = f"{self.dw}/studies/{study}"
        if level in ("series", "instance"):
            out += f"/series/{series}"
        if level == "instance":
            out += f"/instances/{sop}"
        return out + suffix

    def get(self, url: str, accept: str | None = None, **headers: str):
        hdrs = {k.replace("_", "-"): [v] for k, v in headers.items()}
        if accept is not None:
            hdrs["Accept"] = [accept]
        return self.daemon.request("GET", url, headers=hdrs)

    @staticmethod
    def ctype(response) -> str:
        return response.headers.getRawHeaders("content-type")[0]


class MetadataTests(WadoTestBase):
    @inlineCallbacks
    def test_levels_and_bulk_uris(self):
        for level in ("study", "series", "instance"):
            response, body = yield self.get(self.url("CT_small.dcm", "/metadata", level))
            self.assertEqual(response.code, 200)
            self.assertEqual(self.ctype(response), "application/dicom+json")
            doc = json.loads(body)
            self.assertEqual(len(doc), 1)
            uri = doc[0]["7FE00010"]["BulkDataURI"]
            self.assertTrue(uri.startswith(self.daemon.url + self.url("CT_small.dcm")), uri)
            self.assertEqual(doc[0]["00100010"]["Value"][0]["Alphabetic"], "CompressedSamples^CT1")

    @inlineCallbacks
    def test_forwarded_host(self):
        response, body = yield self.get(self.url("CT_small.dcm", "/metadata"),
                                        X_Forwarded_Host="pacs.example", X_Forwarded_Proto="https")
        uri = json.loads(body)[0]["7FE00010"]["BulkDataURI"]
        self.assertTrue(uri.startswith("https://pacs.example/dicom-web/studies/"), uri)

    @inlineCallbacks
    def test_etag(self):
        url = self.url("CT_small.dcm", "/metadata", "series")
        response, _ = yield self.get(url)
        etag = response.headers.getRawHeaders("etag")[0]
        response, body = yield self.get(url, If_None_Match=etag)
        self.assertEqual(response.code, 304)
        self.assertEqual(body, b"")
        response, _ = yield self.get(url, If_None_Match='"other"')
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_xml(self):
        from dwdaemon.dicom.xmlmodel import xml_to_dataset_json

        response, body = yield self.get(self.url("CT_small.dcm", "/metadata"),
                                        'multipart/related; type="application/dicom+xml"')
        self.assertEqual(response.code, 200)
        parts = split_multipart(self.ctype(response), body)
        self.assertEqual(len(parts), 1)
        self.assertEqual(parts[0][0]["content-type"], "application/dicom+xml")
        doc = xml_to_dataset_json(parts[0][1])
        self.assertEqual(doc["00080018"]["Value"][0], _uids("CT_small.dcm")[2])

    @inlineCallbacks
    def test_negotiation(self):
        url = self.url("CT_small.dcm", "/metadata")
        for accept in ("application/json", "*/*", "application/dicom+json; q=0.5, text/html",
                       'multipart/related; type="application/dicom+json"'):
            response, _ = yield self.get(url, accept)
            self.assertEqual((accept, response.code), (accept, 200))
        response, body = yield self.get(url, "text/html")
        self.assertEqual(response.code, 406)
        self.assertIn(b"not acceptable", body)


class RetrieveTests(WadoTestBase):
    @inlineCallbacks
    def test_default_is_explicit_le_decompressed(self):
        for name in ("CT_small.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm",
                     "MR_small_bigendian.dcm", "MR_small_jpeg_ls_lossless.dcm"):
            response, body = yield self.get(self.url(name))
            self.assertEqual(response.code, 200, name)
            parts = split_multipart(self.ctype(response), body)
            self.assertEqual(len(parts), 1)
            headers, payload = parts[0]
            self.assertEqual(headers["content-type"],
                             f"application/dicom; transfer-syntax={EVRLE}")
            self.assertTrue(headers["content-location"].endswith(self.uids[name][2]))
            ds = _dcm(payload)
            self.assertEqual(ds.file_meta.TransferSyntaxUID, EVRLE)
            np.testing.assert_array_equal(ds.pixel_array, reference_pixels(name), err_msg=name)

    @inlineCallbacks
    def test_as_stored(self):
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        response, body = yield self.get(self.url("examples_ybr_color.dcm", level="study"), accept)
        parts = split_multipart(self.ctype(response), body)
        with open(path("examples_ybr_color.dcm"), "rb") as f:
            self.assertEqual(parts[0][1], f.read())
        self.assertIn("1.2.840.10008.1.2.4.50", parts[0][0]["content-type"])

    @inlineCallbacks
    def test_named_syntax(self):
        accept = f"multipart/related; type=application/dicom; transfer-syntax={RLE}"
        response, body = yield self.get(self.url("CT_small.dcm", level="series"), accept)
        self.assertEqual(response.code, 200)
        headers, payload = split_multipart(self.ctype(response), body)[0]
        self.assertEqual(headers["content-type"], f"application/dicom; transfer-syntax={RLE}")
        ds = _dcm(payload)
        self.assertEqual(ds.file_meta.TransferSyntaxUID, RLE)
        np.testing.assert_array_equal(ds.pixel_array, reference_pixels("CT_small.dcm"))

    @inlineCallbacks
    def test_not_acceptable(self):
        for accept in ('multipart/related; type="application/dicom"; '
                       'transfer-syntax=1.2.840.10008.1.2.4.50',   # lossy: never produced
                       'multipart/related; type="application/dicom"; '
                       'transfer-syntax=1.2.840.10008.1.2.4.80',   # 32-bit RT dose: no JPEG-LS
                       "application/dicom+json"):
            response, body = yield self.get(self.url("rtdose.dcm"), accept)
            self.assertEqual(response.code, 406, accept)
            self.assertIn(b"not acceptable", body)

    @inlineCallbacks
    def test_sr_and_waveform(self):
        for name in ("test-SR.dcm", "waveform_ecg.dcm"):
            response, body = yield self.get(self.url(name))
            ds = _dcm(split_multipart(self.ctype(response), body)[0][1])
            self.assertEqual(ds.SOPInstanceUID, _uids(name)[2])


class NotFoundTests(WadoTestBase):
    files = ["CT_small.dcm", "MR_small.dcm"]

    @inlineCallbacks
    def test_404_everywhere(self):
        ct_study, ct_series, ct_sop = _uids("CT_small.dcm")
        mr_study, mr_series, mr_sop = _uids("MR_small.dcm")
        bad = "1.2.3.4.5.6.7"
        urls = [f"/studies/{bad}", f"/studies/{bad}/metadata", f"/studies/{bad}/rendered",
                f"/studies/{ct_study}/series/{bad}",
                f"/studies/{ct_study}/series/{mr_series}",            # series of another study
                f"/studies/{ct_study}/series/{mr_series}/metadata",
                f"/studies/{ct_study}/series/{ct_series}/instances/{bad}",
                f"/studies/{ct_study}/series/{ct_series}/instances/{mr_sop}",  # wrong series
                f"/studies/{mr_study}/series/{ct_series}/instances/{ct_sop}",  # wrong study
                f"/studies/{ct_study}/series/{ct_series}/instances/{mr_sop}/frames/1",
                f"/studies/{ct_study}/series/{ct_series}/instances/{bad}/metadata",
                f"/studies/{ct_study}/series/{ct_series}/instances/{bad}/rendered",
                f"/studies/{ct_study}/series/{ct_series}/instances/{ct_sop}/bulk/00091234",
                f"/studies/{bad}/series/{ct_series}/thumbnail"]
        for url in urls:
            response, body = yield self.get(self.dw + url)
            self.assertEqual(response.code, 404, url)
            self.assertEqual(self.ctype(response), "application/json")


class FrameTests(WadoTestBase):
    @inlineCallbacks
    def test_native_frames_are_slices(self):
        response, body = yield self.get(self.url("rtdose.dcm", "/frames/2,15"))
        self.assertEqual(response.code, 200)
        parts = split_multipart(self.ctype(response), body)
        ref = reference_pixels("rtdose.dcm")
        self.assertEqual(len(parts), 2)
        for (headers, payload), index in zip(parts, (1, 14), strict=True):
            self.assertEqual(headers["content-type"],
                             f"application/octet-stream; transfer-syntax={EVRLE}")
            self.assertEqual(payload, ref[index].astype("<u4").tobytes())
            self.assertTrue(headers["content-location"].endswith(f"/frames/{index + 1}"))

    @inlineCallbacks
    def test_encapsulated_frames_as_stored(self):
        ds = read("examples_ybr_color.dcm")
        stored = list(generate_frames(ds.PixelData, number_of_frames=30))
        for accept in ('multipart/related; type="image/jpeg"',
                       'multipart/related; type="image/dicom+jpeg"',  # the seed's spelling
                       'multipart/related; type="image/jpeg"; '
                       'transfer-syntax=1.2.840.10008.1.2.4.50', None, "*/*"):
            response, body = yield self.get(self.url("examples_ybr_color.dcm", "/frames/1,30"),
                                            accept)
            self.assertEqual(response.code, 200, accept)
            parts = split_multipart(self.ctype(response), body)
            self.assertEqual([p[1] for p in parts], [stored[0], stored[29]])
            self.assertEqual(parts[0][0]["content-type"],
                             "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50")

    @inlineCallbacks
    def test_frame_media_types(self):
        cases = {"SC_rgb_rle.dcm": "image/x-dicom-rle",
                 "JPEG2000.dcm": "image/jp2",
                 "MR_small_jpeg_ls_lossless.dcm": "image/jls"}
        for name, media in cases.items():
            response, body = yield self.get(self.url(name, "/frames/1"))
            parts = split_multipart(self.ctype(response), body)
            self.assertTrue(parts[0][0]["content-type"].startswith(media + ";"),
                            (name, parts[0][0]))
            decoded = transcode.decode_frame(
                _wrap_frame(path(name), parts[0][1]), 0)[0]
            np.testing.assert_array_equal(decoded, reference_pixels(name), err_msg=name)

    @inlineCallbacks
    def test_decoded_octet_stream(self):
        for name in ("examples_ybr_color.dcm", "SC_rgb_rle.dcm", "MR_small_bigendian.dcm",
                     "image_dfl.dcm", "JPEG2000.dcm"):
            response, body = yield self.get(
                self.url(name, "/frames/1"),
                'multipart/related; type="application/octet-stream"')
            self.assertEqual(response.code, 200, name)
            payload = split_multipart(self.ctype(response), body)[0][1]
            ref = reference_pixels(name)
            ref = ref[0] if ref.ndim == 4 else ref
            self.assertEqual(payload, ref.astype(ref.dtype.newbyteorder("<")).tobytes(), name)

    @inlineCallbacks
    def test_seed_jpeg_preview_of_native_frames(self):
        # The seed asks frames as `multipart/related; type=image/dicom+jpeg` for a JPEG preview:
        # native frames are rendered to JPEG baseline (lossy), labelled as such.
        for accept in ("multipart/related; type=image/dicom+jpeg",
                       'multipart/related; type="image/jpeg"'):
            response, body = yield self.get(self.url("CT_small.dcm", "/frames/1"), accept)
            self.assertEqual(response.code, 200, body)
            headers, payload = split_multipart(self.ctype(response), body)[0]
            self.assertEqual(headers["content-type"],
                             "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50")
            image = Image.open(io.BytesIO(payload))
            self.assertEqual((image.format, image.size), ("JPEG", (128, 128)))
            self.assertGreater(np.asarray(image).std(), 10)  # an image, not a flat field
        # A wildcard never picks the lossy preview: native bytes are served.
        response, body = yield self.get(self.url("CT_small.dcm", "/frames/1"), "*/*")
        self.assertIn("application/octet-stream", self.ctype(response))

    @inlineCallbacks
    def test_single_part_when_asked(self):
        response, body = yield self.get(self.url("CT_small.dcm", "/frames/1"),
                                        "application/octet-stream")
        self.assertEqual(self.ctype(response),
                         f"application/octet-stream; transfer-syntax={EVRLE}")
        self.assertEqual(body, reference_pixels("CT_small.dcm").tobytes())

    @inlineCallbacks
    def test_errors(self):
        for frames in ("0", "2", "1,2", "x", "1,,1"):
            response, body = yield self.get(self.url("CT_small.dcm", f"/frames/{frames}"))
            self.assertEqual(response.code, 400, frames)
        response, body = yield self.get(self.url("test-SR.dcm", "/frames/1"))
        self.assertEqual(response.code, 400)
        for accept, name in (('multipart/related; type="image/jp2"', "examples_ybr_color.dcm"),
                             ('multipart/related; type="image/jls"', "CT_small.dcm"),
                             ('multipart/related; type="image/jpeg"; '
                              'transfer-syntax=1.2.840.10008.1.2.4.70', "CT_small.dcm"),
                             ("text/plain", "CT_small.dcm")):
            response, body = yield self.get(self.url(name, "/frames/1"), accept)
            self.assertEqual(response.code, 406, accept)


def _wrap_frame(original: str, frame: bytes) -> pydicom.Dataset:
    """A one-frame dataset with the header of ``original`` around an encapsulated ``frame``."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(original)
    ds.PixelData = encapsulate([frame])
    ds.NumberOfFrames = 1
    return ds


class BulkTests(WadoTestBase):
    files = ["CT_small.dcm", "examples_ybr_color.dcm"]

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.nested = nested_bulk_file()
        yield self.daemon.store.ingest_bytes(self.nested)

    @inlineCallbacks
    def test_pixel_data_uri_and_range(self):
        response, body = yield self.get(self.url("CT_small.dcm", "/metadata"))
        uri = json.loads(body)[0]["7FE00010"]["BulkDataURI"]
        response, body = yield self.get(uri)
        self.assertEqual(response.code, 200)
        pixels = reference_pixels("CT_small.dcm").tobytes()
        self.assertEqual(body, pixels)
        response, body = yield self.get(uri, Range="bytes=100-199")
        self.assertEqual(response.code, 206)
        self.assertEqual(response.headers.getRawHeaders("content-range")[0],
                         f"bytes 100-199/{len(pixels)}")
        self.assertEqual(body, pixels[100:200])
        response, body = yield self.get(uri, Range="bytes=-10")
        self.assertEqual((response.code, body), (206, pixels[-10:]))
        response, body = yield self.get(uri, Range=f"bytes={len(pixels)}-")
        self.assertEqual(response.code, 416)
        response, body = yield self.get(uri, 'multipart/related; type="application/octet-stream"')
        self.assertEqual(split_multipart(self.ctype(response), body)[0][1], pixels)

    @inlineCallbacks
    def test_nested_sequence_bulk(self):
        ds = _dcm(self.nested)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        base = f"{self.dw}/studies/{study}/series/{series}/instances/{sop}"
        response, body = yield self.get(base + "/metadata")
        item = json.loads(body)[0]["00400555"]["Value"][0]
        uri = item["00420011"]["BulkDataURI"]
        self.assertTrue(uri.endswith("/bulk/00400555/0/00420011"), uri)
        response, body = yield self.get(uri)
        self.assertEqual(body, (bytes(range(256)) * 8)[:2000])

    @inlineCallbacks
    def test_big_endian_words_served_little_endian(self):
        from pydicom.uid import ExplicitVRBigEndian

        ds = _dcm(make_image(np.arange(64, dtype=np.uint16).reshape(8, 8)))
        words = np.arange(1024, dtype=np.uint16)
        ds.add_new(0x00281201, "OW", words.astype(">u2").tobytes())  # 2 KB: a bulk value
        ds.PixelData = np.arange(64, dtype=np.uint16).reshape(8, 8).astype(">u2").tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
        yield self.daemon.store.ingest_bytes(out.getvalue())
        base = (f"{self.dw}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}/bulk/")
        response, body = yield self.get(base + "00281201")
        self.assertEqual(body, words.astype("<u2").tobytes())
        response, body = yield self.get(base + "7FE00010")
        self.assertEqual(body, np.arange(64, dtype="<u2").tobytes())

    @inlineCallbacks
    def test_encapsulated_pixel_data_as_frames(self):
        response, body = yield self.get(self.url("examples_ybr_color.dcm", "/metadata"))
        uri = json.loads(body)[0]["7FE00010"]["BulkDataURI"]
        response, body = yield self.get(uri)
        parts = split_multipart(self.ctype(response), body)
        self.assertEqual(len(parts), 30)
        self.assertTrue(parts[0][0]["content-type"].startswith("image/jpeg"))


class RenderedTests(WadoTestBase):
    @inlineCallbacks
    def test_instance_jpeg_default(self):
        response, body = yield self.get(self.url("CT_small.dcm", "/rendered"))
        self.assertEqual((response.code, self.ctype(response)), (200, "image/jpeg"))
        self.assertEqual(_image(body).size, (128, 128))

    @inlineCallbacks
    def test_png_content_window_viewport(self):
        response, body = yield self.get(
            self.url("CT_small.dcm", "/rendered?window=100,500,linear"), "image/png")
        self.assertEqual(self.ctype(response), "image/png")
        arr, header = transcode.decode_frame(path("CT_small.dcm"), 0)
        expected = render.to_display(arr, header, window=render.Window(100, 500))
        np.testing.assert_array_equal(np.asarray(_image(body)), expected)
        response, body = yield self.get(self.url("JPGExtended.dcm", "/rendered?viewport=64,64"))
        self.assertEqual(response.code, 404)  # not stored here
        response, body = yield self.get(self.url("CT_small.dcm", "/rendered?viewport=64,32"))
        self.assertEqual(_image(body).size, (32, 32))

    @inlineCallbacks
    def test_colour_and_palette(self):
        for name in ("examples_palette.dcm", "examples_ybr_color.dcm"):
            response, body = yield self.get(self.url(name, "/rendered"), "image/png")
            image = _image(body)
            self.assertEqual(image.mode, "RGB", name)

    @inlineCallbacks
    def test_gif_multiframe_and_frames(self):
        response, body = yield self.get(self.url("examples_ybr_color.dcm", "/rendered"),
                                        "image/gif")
        self.assertEqual(self.ctype(response), "image/gif")
        # Pillow merges identical consecutive frames, so fewer than 30 may remain
        self.assertGreater(Image.open(io.BytesIO(body)).n_frames, 20)
        response, body = yield self.get(self.url("rtdose.dcm", "/frames/3/rendered"),
                                        "image/png")
        arr, header = transcode.decode_frame(path("rtdose.dcm"), 2)
        np.testing.assert_array_equal(np.asarray(_image(body)),
                                      render.to_display(arr, header, frame=2))
        response, body = yield self.get(self.url("rtdose.dcm", "/frames/1,2/rendered"))
        parts = split_multipart(self.ctype(response), body)
        self.assertEqual([p[0]["content-type"] for p in parts], ["image/jpeg"] * 2)

    @inlineCallbacks
    def test_thumbnails_and_groups(self):
        for level in ("study", "series", "instance"):
            response, body = yield self.get(self.url("examples_palette.dcm", "/thumbnail", level))
            self.assertEqual(response.code, 200, level)
            self.assertLessEqual(max(_image(body).size), 128)
        response, body = yield self.get(self.url("rtdose.dcm", "/frames/2/thumbnail"))
        self.assertEqual(response.code, 200)
        response, body = yield self.get(self.url("rtdose.dcm", "/rendered", "series"),
                                        'multipart/related; type="image/jpeg"')
        parts = split_multipart(self.ctype(response), body)
        self.assertEqual(len(parts), 1)
        self.assertEqual(_image(parts[0][1]).size, (10, 10))
        # Without multipart in Accept: one image (tests/wado/test_rendered_group.py).
        response, body = yield self.get(self.url("rtdose.dcm", "/rendered", "series"))
        self.assertEqual(self.ctype(response), "image/jpeg")
        self.assertEqual(_image(body).size, (10, 10))

    @inlineCallbacks
    def test_errors(self):
        response, _ = yield self.get(self.url("CT_small.dcm", "/rendered"), "image/tiff")
        self.assertEqual(response.code, 406)
        response, _ = yield self.get(self.url("test-SR.dcm", "/rendered"))
        self.assertEqual(response.code, 400)
        for query in ("window=1", "window=40,0", "viewport=0,0", "quality=500"):
            response, _ = yield self.get(self.url("CT_small.dcm", "/rendered?" + query))
            self.assertEqual(response.code, 400, query)
        response, _ = yield self.get(self.url("rtdose.dcm", "/frames/16/rendered"))
        self.assertEqual(response.code, 400)


class WadoUriTests(WadoTestBase):
    files = ["CT_small.dcm", "examples_ybr_color.dcm", "MR_small_RLE.dcm", "test-SR.dcm"]

    def wado(self, **params: str):
        from urllib.parse import urlencode

        return self.get(self.daemon.config.dicomweb.wado_root + "?" + urlencode(params))

    @inlineCallbacks
    def test_seed_example_jpeg(self):
        _, _, sop = _uids("CT_small.dcm")
        response, body = yield self.wado(objectUID=sop, requestType="WADO")
        self.assertEqual((response.code, self.ctype(response)), (200, "image/jpeg"))
        self.assertEqual(_image(body).size, (128, 128))

    @inlineCallbacks
    def test_uids_must_match(self):
        study, series, sop = _uids("CT_small.dcm")
        other_study, _, _ = _uids("MR_small_RLE.dcm")
        response, _ = yield self.wado(requestType="WADO", studyUID=study, seriesUID=series,
                                      objectUID=sop)
        self.assertEqual(response.code, 200)
        response, _ = yield self.wado(requestType="WADO", studyUID=other_study, objectUID=sop)
        self.assertEqual(response.code, 404)

    @inlineCallbacks
    def test_errors(self):
        _, _, sop = _uids("CT_small.dcm")
        for params, code in (({"objectUID": sop}, 400),
                             ({"requestType": "WADO-RS", "objectUID": sop}, 400),
                             ({"requestType": "WADO"}, 400),
                             ({"requestType": "WADO", "objectUID": "1.2.3"}, 404),
                             ({"requestType": "WADO", "objectUID": sop, "frameNumber": "2"}, 400),
                             ({"requestType": "WADO", "objectUID": sop, "rows": "0"}, 400),
                             ({"requestType": "WADO", "objectUID": sop,
                               "windowCenter": "40"}, 400),
                             ({"requestType": "WADO", "objectUID": sop,
                               "contentType": "image/tiff"}, 406),
                             ({"requestType": "WADO", "objectUID": sop,
                               "contentType": "application/dicom",
                               "transferSyntax": "1.2.840.10008.1.2.4.50"}, 406)):
            response, _ = yield self.wado(**params)
            self.assertEqual(response.code, code, params)

    @inlineCallbacks
    def test_dicom(self):
        _, _, sop = _uids("MR_small_RLE.dcm")
        response, body = yield self.wado(requestType="WADO", objectUID=sop,
                                         contentType="application/dicom")
        self.assertEqual(self.ctype(response), "application/dicom")
        ds = _dcm(body)
        self.assertEqual(ds.file_meta.TransferSyntaxUID, EVRLE)
        np.testing.assert_array_equal(ds.pixel_array, reference_pixels("MR_small_RLE.dcm"))
        response, body = yield self.wado(requestType="WADO", objectUID=sop,
                                         contentType="application/dicom", transferSyntax="*")
        with open(path("MR_small_RLE.dcm"), "rb") as f:
            self.assertEqual(body, f.read())
        _, _, sr = _uids("test-SR.dcm")
        response, body = yield self.wado(requestType="WADO", objectUID=sr)
        self.assertEqual(self.ctype(response), "application/dicom")

    @inlineCallbacks
    def test_image_parameters(self):
        _, _, sop = _uids("examples_ybr_color.dcm")
        response, body = yield self.wado(requestType="WADO", objectUID=sop,
                                         contentType="image/png", frameNumber="30",
                                         rows="60", columns="200", region="0,0,0.5,0.5")
        self.assertEqual(self.ctype(response), "image/png")
        self.assertEqual(_image(body).size, (80, 60))
        _, _, ct = _uids("CT_small.dcm")
        response, body = yield self.wado(requestType="WADO", objectUID=ct,
                                         contentType="image/gif", windowCenter="0",
                                         windowWidth="1")
        self.assertEqual(self.ctype(response), "image/gif")
        values = set(np.unique(np.asarray(_image(body).convert("L"))).tolist())
        self.assertTrue(values <= {0, 255})
        low, _ = yield self.wado(requestType="WADO", objectUID=ct, imageQuality="5")
        response, small = yield self.wado(requestType="WADO", objectUID=ct, imageQuality="5")
        response, big = yield self.wado(requestType="WADO", objectUID=ct, imageQuality="100")
        self.assertLess(len(small), len(big))


class WadoDisabledTests(TestCase):
    @inlineCallbacks
    def test_wado_uri_off(self):
        from tests.support import Daemon, make_config

        config = make_config(self.mktemp())
        config = config.with_overrides(
            dicomweb=dataclasses.replace(config.dicomweb, enable_wado=False))
        daemon = Daemon(config)
        self.addCleanup(daemon.stop)
        response, _ = yield daemon.request("GET", "/wado?requestType=WADO&objectUID=1.2.3")
        self.assertEqual(response.code, 404)


class GeneratedImageTests(WadoTestBase):
    """MONOCHROME1 and signed data, and a large series, generated."""

    files: list[str] = []

    @inlineCallbacks
    def test_large_series_metadata(self):
        from pydicom.uid import generate_uid

        study, series = generate_uid(), generate_uid()
        for i in range(70):  # more than LARGE_METADATA: assembled in a worker thread
            yield self.daemon.store.ingest_bytes(make_image(
                np.full((4, 4), i, np.uint16), study=study, series=series, InstanceNumber=i))
        response, body = yield self.get(f"{self.dw}/studies/{study}/series/{series}/metadata")
        doc = json.loads(body)
        self.assertEqual(len(doc), 70)
        self.assertEqual(sorted(d["00200013"]["Value"][0] for d in doc), list(range(70)))
        self.assertTrue(all("BulkDataURI" in d["7FE00010"] for d in doc))

    @inlineCallbacks
    def test_monochrome1(self):
        pixels = np.array([[0, 100], [200, 300]], np.int16)
        data = make_image(pixels, photometric="MONOCHROME1", signed=True,
                          WindowCenter=150, WindowWidth=301)
        yield self.daemon.store.ingest_bytes(data)
        ds = _dcm(data)
        url = (f"{self.dw}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
               f"/instances/{ds.SOPInstanceUID}/rendered")
        response, body = yield self.get(url, "image/png")
        out = np.asarray(_image(body))
        self.assertEqual(int(out[0, 0]), 255)  # lowest value is white in MONOCHROME1
        self.assertEqual(int(out[1, 1]), 0)


MATRIX = ["JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm", "693_J2KI.dcm", "GDCMJ2K_TextGBR.dcm",
          "MR_small_jp2klossless.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm",
          "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_small_odd_big_endian.dcm",
          "examples_jpeg2k.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_implicit.dcm"]


class TransferSyntaxMatrixTests(WadoTestBase):
    """Every transfer syntax of the shipped files: retrieve, frames and rendered."""

    files = MATRIX + ["liver_1frame.dcm"]
    relabel = frozenset(MATRIX)

    @inlineCallbacks
    def test_retrieve_frames_rendered(self):
        for name in MATRIX:
            ref = reference_pixels(name)
            frames = int(read(name).get("NumberOfFrames", 1) or 1)
            response, body = yield self.get(self.url(name))
            self.assertEqual(response.code, 200, name)
            ds = _dcm(split_multipart(self.ctype(response), body)[0][1])
            self.assertEqual(ds.file_meta.TransferSyntaxUID, EVRLE, name)
            np.testing.assert_array_equal(ds.pixel_array, ref, err_msg=name)
            last = ref[frames - 1] if frames > 1 else ref
            response, body = yield self.get(
                self.url(name, f"/frames/{frames}"),
                'multipart/related; type="application/octet-stream"')
            self.assertEqual(response.code, 200, name)
            payload = split_multipart(self.ctype(response), body)[0][1]
            self.assertEqual(payload, last.astype(last.dtype.newbyteorder("<")).tobytes(), name)
            response, body = yield self.get(self.url(name, "/rendered"), "image/png")
            self.assertEqual(response.code, 200, name)
            image = _image(body)
            self.assertEqual(image.size, (int(ds.Columns), int(ds.Rows)), name)

    @inlineCallbacks
    def test_one_bit_frames(self):
        response, body = yield self.get(self.url("liver_1frame.dcm", "/frames/1"))
        payload = split_multipart(self.ctype(response), body)[0][1]
        self.assertEqual(payload, read("liver_1frame.dcm").PixelData)
        response, body = yield self.get(self.url("liver_1frame.dcm", "/rendered"), "image/png")
        self.assertEqual(set(np.unique(np.asarray(_image(body))).tolist()) <= {0, 255}, True)
