"""Frame lists, media type choices and request parameters."""

from __future__ import annotations

from twisted.trial import unittest

from dwdaemon.dicom import wado_model as wm
from dwdaemon.dicom.render import Window

JPEG = "1.2.840.10008.1.2.4.50"
RLE = "1.2.840.10008.1.2.5"
MPEG2 = "1.2.840.10008.1.2.4.100"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def _decodable(ts: str) -> bool:
    return ts != MPEG2


class FrameListTests(unittest.TestCase):
    def test_valid(self) -> None:
        self.assertEqual(wm.parse_frame_list("1", 1), [1])
        self.assertEqual(wm.parse_frame_list("3,1,2", 3), [3, 1, 2])
        self.assertEqual(wm.parse_frame_list(" 2 , 2,1", 3), [2, 1])
        self.assertEqual(wm.parse_frame_list("2-4", 5), [2, 3, 4])

    def test_invalid(self) -> None:
        for text, count in (("0", 3), ("4", 3), ("", 3), ("a", 3), ("1,,2", 3), ("-1", 3),
                            ("1,5", 3)):
            with self.assertRaises(wm.FrameListError, msg=text):
                wm.parse_frame_list(text, count)


class FrameChoiceTests(unittest.TestCase):
    def test_default(self) -> None:
        # No Accept: native little endian octets, decoded when stored compressed (Orthanc).
        self.assertEqual(wm.choose_frames(None, JPEG, _decodable),
                         wm.FrameChoice(wm.OCTET_STREAM, wm.EXPLICIT_VR_LE, True))
        self.assertEqual(wm.choose_frames(None, wm.EXPLICIT_VR_LE, _decodable),
                         wm.FrameChoice(wm.OCTET_STREAM, wm.EXPLICIT_VR_LE, False))
        self.assertEqual(wm.choose_frames("*/*", JPEG, _decodable).media_type, wm.OCTET_STREAM)

    def test_stored_type(self) -> None:
        for accept in ('multipart/related; type="image/jpeg"',  # 4.70 not encodable here
                       "multipart/related; type=image/jpeg; transfer-syntax=" + JPEG,
                       'multipart/related; type="image/dicom+jpeg"',
                       'multipart/related; type="image/*"',
                       'multipart/related; type="*/*"; transfer-syntax=*',
                       'multipart/related; type="image/jpeg"; transfer-syntax=*'):
            choice = wm.choose_frames(accept, JPEG, _decodable)
            self.assertEqual((choice.media_type, choice.transfer_syntax, choice.decode),
                             ("image/jpeg", JPEG, False), accept)

    def test_default_syntax_of_media_type(self) -> None:
        # PS3.18 Table 8.7.3-5: image/jpeg means JPEG lossless SV1 unless a syntax is named.
        choice = wm.choose_frames('multipart/related; type="image/jpeg"', JPEG, _decodable,
                                  lambda _s: True)
        self.assertEqual((choice.transfer_syntax, choice.encode), (JPEG_LOSSLESS_SV1, True))
        choice = wm.choose_frames('multipart/related; type="image/jls"', wm.EXPLICIT_VR_LE,
                                  _decodable, lambda _s: True)
        self.assertEqual((choice.media_type, choice.transfer_syntax, choice.encode),
                         ("image/jls", "1.2.840.10008.1.2.4.80", True))

    def test_encode_named_syntax(self) -> None:
        for syntax in (JPEG, "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                       JPEG_LOSSLESS_SV1):
            choice = wm.choose_frames(
                f"multipart/related; type=image/jpeg; transfer-syntax={syntax}",
                wm.EXPLICIT_VR_LE, _decodable, lambda _s: True)
            self.assertEqual((choice.media_type, choice.transfer_syntax, choice.encode),
                             ("image/jpeg", syntax, True))
        with self.assertRaises(wm.NotAcceptableError):  # a syntax of another media type
            wm.choose_frames("multipart/related; type=image/jpeg; "
                             "transfer-syntax=1.2.840.10008.1.2.4.80",
                             wm.EXPLICIT_VR_LE, _decodable, lambda _s: True)

    def test_octet_stream_label_echoes_implicit(self) -> None:
        choice = wm.choose_frames("multipart/related; type=application/octet-stream; "
                                  "transfer-syntax=1.2.840.10008.1.2", JPEG, _decodable)
        self.assertEqual((choice.transfer_syntax, choice.decode), (wm.IMPLICIT_VR_LE, True))

    def test_decode_to_octet_stream(self) -> None:
        for accept in ('multipart/related; type="application/octet-stream"',
                       "multipart/related; type=application/octet-stream; "
                       "transfer-syntax=1.2.840.10008.1.2.1",
                       'multipart/related; type="image/jls", '
                       'multipart/related; type="application/octet-stream"; q=0.5'):
            choice = wm.choose_frames(accept, JPEG, _decodable)
            self.assertEqual((choice.media_type, choice.transfer_syntax, choice.decode),
                             (wm.OCTET_STREAM, wm.EXPLICIT_VR_LE, True), accept)

    def test_q_values_order(self) -> None:
        accept = ('multipart/related; type="application/octet-stream"; q=0.2, '
                  'multipart/related; type="image/jpeg"; q=0.9')
        self.assertEqual(wm.choose_frames(accept, JPEG, _decodable).media_type, "image/jpeg")
        accept = ('multipart/related; type="application/octet-stream"; q=0.9, '
                  'multipart/related; type="image/jpeg"; q=0.2')
        self.assertEqual(wm.choose_frames(accept, JPEG, _decodable).media_type,
                         wm.OCTET_STREAM)

    def test_single_part_when_bare_type(self) -> None:
        self.assertFalse(wm.choose_frames("application/octet-stream", JPEG, _decodable).multipart)
        self.assertTrue(wm.choose_frames("*/*", JPEG, _decodable).multipart)

    def test_big_endian_native_is_swapped(self) -> None:
        choice = wm.choose_frames(None, wm.BIG_ENDIAN, _decodable)
        self.assertEqual((choice.media_type, choice.decode), (wm.OCTET_STREAM, True))

    def test_not_acceptable(self) -> None:
        for accept, stored in (('multipart/related; type="image/jp2"', JPEG),
                               ('multipart/related; type="image/jls"', wm.EXPLICIT_VR_LE),
                               ('multipart/related; type="image/jpeg"; '
                                'transfer-syntax=1.2.840.10008.1.2.4.70', JPEG),
                               ('multipart/related; type="application/octet-stream"', MPEG2),
                               ("text/html", RLE)):
            with self.assertRaises(wm.NotAcceptableError, msg=accept):
                wm.choose_frames(accept, stored, _decodable)

    def test_jpeg_preview_only_when_named(self) -> None:
        # only the seed's spelling asks for the rendered preview
        choice = wm.choose_frames('multipart/related; type="image/dicom+jpeg"',
                                  wm.EXPLICIT_VR_LE, _decodable)
        self.assertEqual((choice.media_type, choice.transfer_syntax, choice.render),
                         ("image/jpeg", wm.JPEG_BASELINE, True))
        choice = wm.choose_frames("*/*", wm.EXPLICIT_VR_LE, _decodable)
        self.assertFalse(choice.render)
        choice = wm.choose_frames('multipart/related; type="image/dicom+jpeg"', JPEG,
                                  _decodable)
        self.assertFalse(choice.render)  # JPEG baseline frames are served as stored
        choice = wm.choose_frames('multipart/related; type="image/jpeg"', wm.EXPLICIT_VR_LE,
                                  _decodable, lambda _s: True)
        self.assertEqual((choice.render, choice.transfer_syntax), (False, JPEG_LOSSLESS_SV1))

    def test_media_type_table(self) -> None:
        self.assertEqual(wm.frame_media_type(RLE), "image/x-dicom-rle")
        self.assertEqual(wm.frame_media_type("1.2.840.10008.1.2.4.80"), "image/jls")
        self.assertEqual(wm.frame_media_type("1.2.840.10008.1.2.4.90"), "image/jp2")
        self.assertEqual(wm.frame_media_type(wm.IMPLICIT_VR_LE), wm.OCTET_STREAM)


class InstanceSyntaxTests(unittest.TestCase):
    @staticmethod
    def _can(source: str, target: str) -> bool:
        return source == target or target in (wm.EXPLICIT_VR_LE, RLE)

    def test_default_is_explicit_le(self) -> None:
        self.assertEqual(wm.choose_instance_syntax(None, JPEG, self._can), wm.EXPLICIT_VR_LE)
        self.assertEqual(wm.choose_instance_syntax(
            'multipart/related; type="application/dicom"', JPEG, self._can), wm.EXPLICIT_VR_LE)
        self.assertEqual(wm.choose_instance_syntax("*/*", JPEG, self._can), wm.EXPLICIT_VR_LE)
        # no type parameter: the resource's own type (Orthanc's test_accept_negotiation)
        self.assertEqual(wm.choose_instance_syntax("multipart/related", JPEG, self._can),
                         wm.EXPLICIT_VR_LE)
        self.assertEqual(wm.choose_instance_syntax("multipart/related; transfer-syntax=*",
                                                   JPEG, self._can), JPEG)

    def test_star_is_as_stored(self) -> None:
        self.assertEqual(wm.choose_instance_syntax(
            'multipart/related; type="application/dicom"; transfer-syntax=*', JPEG, self._can),
            JPEG)

    def test_named(self) -> None:
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=' + RLE
        self.assertEqual(wm.choose_instance_syntax(accept, JPEG, self._can), RLE)
        accept = ('multipart/related; type=application/dicom; transfer-syntax='
                  '1.2.840.10008.1.2.4.80, multipart/related; type=application/dicom; q=0.1')
        self.assertEqual(wm.choose_instance_syntax(accept, JPEG, self._can), wm.EXPLICIT_VR_LE)

    def test_not_acceptable(self) -> None:
        with self.assertRaises(wm.NotAcceptableError):
            wm.choose_instance_syntax('multipart/related; type="application/dicom"; '
                                      'transfer-syntax=1.2.840.10008.1.2.4.80', JPEG, self._can)
        with self.assertRaises(wm.NotAcceptableError):
            wm.choose_instance_syntax("application/dicom+json", JPEG, self._can)


class RenderedChoiceTests(unittest.TestCase):
    def test_choices(self) -> None:
        self.assertEqual(wm.choose_rendered(None), "image/jpeg")
        self.assertEqual(wm.choose_rendered("image/png"), "image/png")
        self.assertEqual(wm.choose_rendered("image/png;q=0.5, image/gif"), "image/gif")
        self.assertEqual(wm.choose_rendered("*/*"), "image/jpeg")
        self.assertEqual(wm.choose_rendered("image/*"), "image/jpeg")
        self.assertEqual(wm.choose_rendered('multipart/related; type="image/png"'), "image/png")
        self.assertEqual(wm.choose_rendered(None, forced="image/gif"), "image/gif")
        with self.assertRaises(wm.NotAcceptableError):
            wm.choose_rendered("application/dicom")
        with self.assertRaises(wm.NotAcceptableError):
            wm.choose_rendered(None, forced="image/tiff")


class ParameterTests(unittest.TestCase):
    def test_window(self) -> None:
        self.assertEqual(wm.parse_window("40,400"), Window(40, 400, "linear"))
        self.assertEqual(wm.parse_window("40,400,SIGMOID"), Window(40, 400, "sigmoid"))
        self.assertEqual(wm.parse_window("-1.5,0.5,linear-exact"),
                         Window(-1.5, 0.5, "linear-exact"))
        for bad in ("40", "a,b", "40,0", "40,0.5", "40,400,cubic", "nan,4"):
            with self.assertRaises(ValueError, msg=bad):
                wm.parse_window(bad)

    def test_viewport(self) -> None:
        self.assertEqual(wm.parse_viewport("256,128"), wm.Viewport(256, 128))
        self.assertEqual(wm.parse_viewport("64,64,10,10,-20,20").source, (10, 10, -20, 20))
        for bad in ("0,10", "10", "a,b", "1,2,3"):
            with self.assertRaises(ValueError, msg=bad):
                wm.parse_viewport(bad)

    def test_quality_region_ints(self) -> None:
        self.assertEqual(wm.parse_quality("75"), 75)
        self.assertEqual(wm.parse_region("0,0.25,0.5,1"), (0.0, 0.25, 0.5, 1.0))
        self.assertEqual(wm.parse_positive_int("12", "rows"), 12)
        for func, bad in ((wm.parse_quality, "0"), (wm.parse_quality, "x"),
                          (wm.parse_region, "0,0,0,1"), (wm.parse_region, "0.5,0,0.2,1"),
                          (wm.parse_positive_int, "0")):
            with self.assertRaises(ValueError):
                func(bad) if func is not wm.parse_positive_int else func(bad, "rows")


class AcceptSyntaxTests(unittest.TestCase):
    def test_empty_parameter_value_is_malformed(self) -> None:
        from dwdaemon.dicom.mediatypes import AcceptError, parse_accept

        with self.assertRaises(AcceptError):
            parse_accept("multipart/related;range=")
        with self.assertRaises(AcceptError):
            parse_accept('application/dicom+json, multipart/related; type=')
        ranges = parse_accept('multipart/related; type=""; a="x"')
        self.assertEqual(ranges[0].params, {"type": "", "a": "x"})
