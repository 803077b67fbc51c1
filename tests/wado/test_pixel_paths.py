"""Pixel paths of WADO-RS/WADO-URI that Orthanc's own suite exercises (issue 10, part B).

pydicom's shipped files and generated data only.
"""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks

from tests.wado.test_routes import WadoTestBase, _image, _uids


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
