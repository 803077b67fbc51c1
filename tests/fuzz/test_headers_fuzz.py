"""Accept, Content-Type and Range headers; WADO frame lists and rendered parameters."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom import wado_model as wm
from dwdaemon.dicom.mediatypes import AcceptError, negotiate, parse_accept, parse_media_type
from dwdaemon.dicom.multipart_reader import parse_content_type
from dwdaemon.web.errors import ApiError
from dwdaemon.web.wado_rs import _parse_range
from tests.fuzz.support import PROFILE, counted

TOKENS = ["application/dicom", "multipart/related", "image/jpeg", "*/*", "image/*", "*",
          "application/octet-stream", "application/dicom+json", "image/jls", "type=",
          '"application/dicom"', "transfer-syntax=", "1.2.840.10008.1.2.1", "*", "q=", "0.5",
          "1.5", "-1", "abc", ";", ",", " ", "=", '"', "\\", "boundary=", "image/dicom+jpeg",
          "\x00", "é", "/", "//"]
header_text = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join) | st.text(max_size=80)
SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "x"]
numbers = st.lists(st.sampled_from(["0", "1", "-1", "2", "10", "1e9", "0.5", "nan", "inf", "",
                                    " ", ",", "-", "+", "linear", "sigmoid", "99999999999"]),
                   max_size=8)


class HeaderPropertyTests(SynchronousTestCase):
    @PROFILE
    @given(header_text | st.binary(max_size=80))
    @counted
    def test_accept(self, header: str | bytes) -> None:
        try:
            ranges = parse_accept(header)
        except AcceptError:
            return
        self.assertIsInstance(ranges, list)
        with contextlib.suppress(AcceptError):
            negotiate(header, ["application/dicom+json", "application/dicom+xml"], {})

    @PROFILE
    @given(header_text | st.binary(max_size=80))
    @counted
    def test_content_type(self, header: str | bytes) -> None:
        media, params = parse_media_type(header)
        self.assertEqual(media, media.lower())
        self.assertIsInstance(params, dict)
        self.assertEqual(parse_content_type(header)[0], media)

    @PROFILE
    @given(header_text, st.sampled_from(SYNTAXES), st.booleans())
    @counted
    def test_wado_negotiation(self, header: str, stored: str, decodable: bool) -> None:
        """Frame, instance and rendered negotiation: a choice or a 4xx-class refusal."""
        refusals = (wm.NotAcceptable, AcceptError)
        with contextlib.suppress(refusals):
            wm.choose_frames(header, stored, lambda syntax: decodable)
        with contextlib.suppress(refusals):
            wm.choose_instance_syntax(header, stored, lambda a, b: decodable)
        with contextlib.suppress(refusals):
            wm.choose_rendered(header)

    @PROFILE
    @given(st.lists(st.sampled_from(["bytes=", "0", "1", "-", "10", ",", " ", "-5", "a",
                                      "99999999999999999999", "=", "Bytes"]), max_size=6)
           .map("".join), st.integers(min_value=0, max_value=10**6))
    @counted
    def test_range(self, header: str, length: int) -> None:
        """A range inside the body, None (whole body) or 416."""
        try:
            result = _parse_range(header, length)
        except ApiError as exc:
            self.assertEqual(exc.status, 416)
            return
        if result is not None:
            start, end = result
            self.assertTrue(0 <= start <= end < length)

    @PROFILE
    @given(st.lists(st.sampled_from(["1", "2", "0", "-", ",", "%2C", "10", "-3", "a", " ",
                                      "3-1", "99999999999999999999999"]), max_size=8)
           .map("".join), st.integers(min_value=0, max_value=50))
    @counted
    def test_frame_list(self, text: str, count: int) -> None:
        try:
            frames = wm.parse_frame_list(text, count)
        except wm.FrameListError:
            return
        self.assertTrue(frames)
        self.assertTrue(all(1 <= n <= count for n in frames))

    @PROFILE
    @given(numbers.map(",".join), numbers.map("".join))
    @counted
    def test_rendered_parameters(self, listed: str, single: str) -> None:
        """window, viewport, quality, region, rows/columns: a value or ValueError."""
        for parse, text in ((wm.parse_window, listed), (wm.parse_viewport, listed),
                            (wm.parse_region, listed), (wm.parse_quality, single),
                            (lambda t: wm.parse_positive_int(t, "rows"), single)):
            with contextlib.suppress(ValueError):
                parse(text)
