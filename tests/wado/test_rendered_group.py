"""Study/series ``rendered`` follow Accept: one image unless multipart was asked (issue 13)."""

from __future__ import annotations

import copy
import io
import json

import pydicom
from pydicom.uid import generate_uid
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dwdaemon.dicom import wado_model as wm
from tests.support import start_daemon, testdata
from tests.wado.helpers import split_multipart


def _series(count: int) -> tuple[str, str, list[tuple[str, bytes]]]:
    """One CT series of ``count`` instances, each with different pixel values."""
    base = pydicom.dcmread(testdata("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(count):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        pixels = ds.pixel_array
        ds.PixelData = (pixels // (i + 1)).astype(pixels.dtype).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf)
        out.append((ds.SOPInstanceUID, buf.getvalue()))
    return study, series, out


class RenderedGroupTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> None:
        self.daemon = start_daemon(self)
        self.study, self.series, files = _series(3)
        ids = []
        for _sop, data in files:
            response, body = yield self.daemon.request("POST", "/instances", data=data)
            self.assertEqual(response.code, 200)
            ids.append(json.loads(body)["ID"])
        # Orthanc's choice: the instance with the smallest Orthanc ID.
        self.first = min(zip(ids, files, strict=True))[1][0]
        self.dw = self.daemon.config.dicomweb.root.rstrip("/")

    def get(self, path: str, accept: str | None = None) -> object:
        headers = {"Accept": [accept]} if accept else None
        return self.daemon.request("GET", self.dw + path, headers=headers)

    @inlineCallbacks
    def test_single_image_unless_multipart_asked(self) -> None:
        series = f"/studies/{self.study}/series/{self.series}"
        response, expected = yield self.get(f"{series}/instances/{self.first}/rendered")
        self.assertEqual(response.code, 200)
        for level in (f"/studies/{self.study}", series):
            for accept in (None, "image/jpeg", "*/*", "image/*"):
                response, body = yield self.get(level + "/rendered", accept)
                self.assertEqual(response.code, 200, (level, accept))
                ctype = response.headers.getRawHeaders("content-type")[0]
                self.assertEqual(ctype, "image/jpeg", (level, accept))
                self.assertEqual(body, expected, (level, accept))
            response, body = yield self.get(level + "/rendered", "image/png")
            self.assertEqual(response.headers.getRawHeaders("content-type")[0], "image/png")
            self.assertTrue(body.startswith(b"\x89PNG"))
            response, body = yield self.get(level + "/rendered",
                                            'multipart/related; type="image/jpeg"')
            ctype = response.headers.getRawHeaders("content-type")[0]
            self.assertTrue(ctype.startswith("multipart/related"), ctype)
            parts = split_multipart(ctype, body)
            self.assertEqual(len(parts), 3)
            response, _ = yield self.get(level + "/rendered", "image/tiff")
            self.assertEqual(response.code, 406)


class ChoiceTests(SynchronousTestCase):
    def test_multipart_only_when_asked(self) -> None:
        answer = wm.choose_rendered_answer
        self.assertEqual(answer(None), ("image/jpeg", False))
        self.assertEqual(answer("*/*"), ("image/jpeg", False))
        self.assertEqual(answer("image/png"), ("image/png", False))
        self.assertEqual(answer('multipart/related; type="image/png"'), ("image/png", True))
        self.assertEqual(answer("multipart/related; type=image/jpeg, image/png;q=0.5"),
                         ("image/jpeg", True))
        self.assertEqual(answer("image/png, multipart/related; type=image/jpeg;q=0.5"),
                         ("image/png", False))
        self.assertEqual(answer(None, forced="image/gif"), ("image/gif", False))
