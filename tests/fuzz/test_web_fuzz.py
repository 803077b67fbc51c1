"""Whole requests against a daemon: random STOW-RS bodies and headers, QIDO-RS queries and
WADO-RS frame/rendered parameters. Whatever the input: no 5xx, no traceback in the log.

Hypothesis drives blocking HTTP clients in a worker thread while the daemon runs on the
reactor of the test.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from pydicom import dcmread
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.fuzz.support import PROFILE, counted
from tests.fuzz.test_multipart_fuzz import bodies, body_of, boundaries, headers
from tests.support import read, start_daemon, testdata

CT = testdata("CT_small.dcm")
CT_DS = dcmread(CT, stop_before_pixels=True)
INSTANCE = (f"/dicom-web/studies/{CT_DS.StudyInstanceUID}/series/{CT_DS.SeriesInstanceUID}"
            f"/instances/{CT_DS.SOPInstanceUID}")

content_types = st.sampled_from([
    "multipart/related; type=\"application/dicom\"; boundary={b}",
    "multipart/related; type=application/dicom+json; boundary={b}",
    "multipart/related; type=\"application/dicom+xml\"; boundary=\"{b}\"",
    "multipart/related; boundary={b}", "multipart/related; type=x; boundary={b}",
    "multipart/related", "application/dicom", "", "multipart/related; boundary=",
    "multipart/related; boundary=\"{b}", "multipart/related; boundary={b}; boundary=z"])
part_payloads = bodies | st.sampled_from([b"{}", b"[]", b"[{}]", b"<NativeDicomModel/>",
                                          b'[{"00080016": {"vr": "UI", "Value": ["1.2"]}}]',
                                          read(CT)[:400], read(CT)])
part_headers = headers | st.sampled_from([{"Content-Type": "application/dicom"},
                                          {"Content-Type": "application/dicom+json"},
                                          {"Content-Type": "application/dicom+xml"},
                                          {"Content-Type": "image/jpeg",
                                           "Content-Location": "x"}])


class WebFuzzTests(TestCase):
    timeout = 600

    @inlineCallbacks
    def test_requests(self) -> Any:
        daemon = start_daemon(self)
        response, _ = yield daemon.request("POST", "/instances", data=read(CT))
        self.assertEqual(response.code, 200)
        port = daemon.port.getHost().port
        yield deferToThread(self.run_properties, port)
        self.assertEqual(self.flushLoggedErrors(), [])

    def run_properties(self, port: int) -> None:
        def call(method: str, path: str, body: bytes | None = None,
                 hdrs: dict[str, str] | None = None) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for name, value in (hdrs or {}).items():
                    conn.putheader(name, value.encode("latin-1", "replace"))
                conn.putheader("Content-Length", str(len(body or b"")))
                conn.endheaders(body)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        @PROFILE
        @given(boundaries, content_types,
               st.lists(st.tuples(part_headers, part_payloads), max_size=3),
               st.sampled_from(["/dicom-web/studies",
                                f"/dicom-web/studies/{CT_DS.StudyInstanceUID}",
                                "/dicom-web/studies/1.2.3"]),
               st.integers(min_value=0, max_value=50))
        @counted
        def stow(boundary: str, ctype: str, parts: Any, path: str, cut: int) -> None:
            body = body_of(boundary, parts, b"", b"")
            if cut:
                body = body[: max(0, len(body) - cut)]
            status = call("POST", path, body, {"Content-Type": ctype.format(b=boundary)})
            assert status < 500, (status, ctype, body[:200])

        @PROFILE
        @given(st.lists(st.tuples(st.sampled_from(["PatientName", "StudyDate", "limit",
                                                   "offset", "includefield", "00100020",
                                                   "fuzzymatching", "Modality", "x"]),
                                  st.text(max_size=15)), max_size=4),
               st.sampled_from(["studies", "series", "instances",
                                f"studies/{CT_DS.StudyInstanceUID}/series"]),
               st.sampled_from(["", "application/dicom+json", "text/html", "*/*; q=x",
                                "multipart/related; type=application/dicom+xml"]))
        @counted
        def qido(params: list[tuple[str, str]], level: str, accept: str) -> None:
            query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
            status = call("GET", f"/dicom-web/{level}?{query}", None, {"Accept": accept})
            assert status < 500, (status, query)

        @PROFILE
        @given(st.sampled_from(["/frames/{v}", "/frames/1/rendered?{v}", "/rendered?{v}",
                                "/thumbnail?{v}", "/bulk/{v}", "/metadata?{v}"]),
               st.lists(st.sampled_from(["1", "2", ",", "-", "0", "window=", "viewport=",
                                         "quality=", "40", "400", "&", "linear", "%2C", "-1",
                                         "100000"]), max_size=8).map("".join),
               st.sampled_from(["", "image/jpeg", "image/png", "image/gif", "*/*",
                                "application/octet-stream", "multipart/related; type=image/jls",
                                "image/jpeg; q=0", "application/dicom"]))
        @counted
        def wado(template: str, value: str, accept: str) -> None:
            path = INSTANCE + template.format(v=value)
            status = call("GET", path, None, {"Accept": accept})
            assert status < 500, (status, path, accept)

        stow()
        qido()
        wado()
