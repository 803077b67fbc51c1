"""Rendering: VOI functions, modality LUT, MONOCHROME1, colour, viewport, region, formats."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from twisted.trial import unittest

from dwdaemon.dicom import render, transcode
from dwdaemon.dicom.render import RenderOptions, Window
from tests.wado.helpers import path, reference_pixels


def _grey_header(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.PixelRepresentation = 1
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class WindowTests(unittest.TestCase):
    """PS3.3 C.11.2.1.2 window functions."""

    def test_linear(self) -> None:
        values = np.array([0, 49.5, 50, 100, 150.5, 200], np.float32)
        out = render.apply_window(values, Window(100, 101, "linear"))
        self.assertEqual(out[0], 0)
        self.assertEqual(out[-1], 255)
        self.assertAlmostEqual(float(out[3]), 255 * (0.5 / 100 + 0.5), places=3)
        self.assertTrue(np.all(np.diff(out) >= 0))

    def test_linear_exact(self) -> None:
        values = np.array([50, 100, 150], np.float32)
        out = render.apply_window(values, Window(100, 100, "linear-exact"))
        np.testing.assert_allclose(out, [0, 127.5, 255])

    def test_sigmoid(self) -> None:
        values = np.array([-1000, 100, 1000], np.float32)
        out = render.apply_window(values, Window(100, 50, "sigmoid"))
        self.assertAlmostEqual(float(out[1]), 127.5, places=3)
        self.assertLess(out[0], 1)
        self.assertGreater(out[2], 254)


class DisplayTests(unittest.TestCase):
    """to_display on generated and shipped data."""

    def test_modality_lut_then_window(self) -> None:
        arr = np.array([[0, 1000], [2000, 3000]], np.int16)
        ds = _grey_header(RescaleSlope=1, RescaleIntercept=-1024)
        out = render.to_display(arr, ds, window=Window(-24, 2, "linear-exact"))
        # after rescale: -1024, -24, 976, 1976; center -24 width 2 -> 0, 127/128, 255, 255
        self.assertEqual(out[0, 0], 0)
        self.assertIn(int(out[0, 1]), (127, 128))
        self.assertEqual(out[1, 0], 255)

    def test_file_window_used_when_none_asked(self) -> None:
        arr = np.array([[0, 100, 200]], np.int16)
        ds = _grey_header(WindowCenter=100, WindowWidth=2, VOILUTFunction="LINEAR_EXACT")
        out = render.to_display(arr, ds)
        self.assertEqual(list(out[0]), [0, 128, 255])

    def test_auto_range_without_window(self) -> None:
        arr = np.array([[10, 20, 30]], np.uint16)
        out = render.to_display(arr, _grey_header(PixelRepresentation=0))
        self.assertEqual(list(out[0]), [0, 128, 255])

    def test_monochrome1_inverted(self) -> None:
        arr = np.array([[10, 20, 30]], np.uint16)
        out = render.to_display(arr, _grey_header(PhotometricInterpretation="MONOCHROME1"))
        self.assertEqual(list(out[0]), [255, 127, 0])

    def test_palette(self) -> None:
        arr, header = transcode.decode_frame(path("examples_palette.dcm"), 0)
        out = render.to_display(arr, header)
        self.assertEqual(out.shape, (350, 800, 3))
        self.assertEqual(out.dtype, np.uint8)
        self.assertGreater(len(np.unique(out.reshape(-1, 3), axis=0)), 10)

    def test_ybr_becomes_rgb(self) -> None:
        arr, header = transcode.decode_frame(path("SC_rgb_dcmtk_+eb+cy+np.dcm"), 0)
        out = render.to_display(arr, header)
        # the dcmtk SC_rgb images have a red band at the top
        red = out[5, 50]
        self.assertGreater(int(red[0]), 200)
        self.assertLess(int(red[1]), 60)

    def test_16bit_rgb_scaled(self) -> None:
        arr, header = transcode.decode_frame(path("SC_rgb_rle_16bit.dcm"), 0)
        out = render.to_display(arr, header)
        np.testing.assert_array_equal(out, (reference_pixels("SC_rgb_rle_16bit.dcm") >> 8))

    def test_one_bit(self) -> None:
        arr, header = transcode.decode_frame(path("liver_1frame.dcm"), 0)
        out = render.to_display(arr, header)
        self.assertEqual(set(np.unique(out)) <= {0, 255}, True)

    def test_rtdose_32bit(self) -> None:
        arr, header = transcode.decode_frame(path("rtdose.dcm"), 3)
        out = render.to_display(arr, header, frame=3)
        self.assertEqual(out.shape, (10, 10))
        self.assertEqual(int(out.max()), 255)


class RenderTests(unittest.TestCase):
    """Encoded output: formats, sizes, viewport, region, quality, multi-frame GIF."""

    def setUp(self) -> None:
        self.arr, self.header = transcode.decode_frame(path("CT_small.dcm"), 0)

    def test_formats(self) -> None:
        for media, fmt in (("image/jpeg", "JPEG"), ("image/png", "PNG"), ("image/gif", "GIF")):
            image = _open(render.render(self.arr, self.header, RenderOptions(media_type=media)))
            self.assertEqual(image.format, fmt)
            self.assertEqual(image.size, (128, 128))

    def test_png_content_matches_display(self) -> None:
        data = render.render(self.arr, self.header, RenderOptions(media_type="image/png"))
        np.testing.assert_array_equal(np.asarray(_open(data)),
                                      render.to_display(self.arr, self.header))

    def test_viewport_keeps_aspect(self) -> None:
        arr, header = transcode.decode_frame(path("JPGExtended.dcm"), 0)  # 256 wide x 1024 high
        image = _open(render.render(arr, header, RenderOptions(viewport=(100, 100))))
        self.assertEqual(image.size, (25, 100))

    def test_viewport_source_rectangle_and_flip(self) -> None:
        opts = RenderOptions(media_type="image/png", viewport=(64, 64), source=(0, 0, 64, 64))
        image = _open(render.render(self.arr, self.header, opts))
        self.assertEqual(image.size, (64, 64))
        full = render.to_display(self.arr, self.header)
        np.testing.assert_array_equal(np.asarray(image), full[:64, :64])
        flipped = RenderOptions(media_type="image/png", viewport=(64, 64),
                                source=(64, 0, -64, 64))
        image = _open(render.render(self.arr, self.header, flipped))
        np.testing.assert_array_equal(np.asarray(image), full[:64, :64][:, ::-1])

    def test_region_and_rows_columns(self) -> None:
        opts = RenderOptions(media_type="image/png", region=(0.5, 0.0, 1.0, 0.5), rows=32)
        image = _open(render.render(self.arr, self.header, opts))
        self.assertEqual(image.size, (32, 32))

    def test_quality(self) -> None:
        low = render.render(self.arr, self.header, RenderOptions(quality=5))
        high = render.render(self.arr, self.header, RenderOptions(quality=100))
        self.assertLess(len(low), len(high))

    def test_window_changes_output(self) -> None:
        narrow = render.render(self.arr, self.header,
                               RenderOptions(media_type="image/png", window=Window(0, 1)))
        values = np.unique(np.asarray(_open(narrow)))
        self.assertTrue(set(values.tolist()) <= {0, 255})

    def test_multiframe_gif_animated(self) -> None:
        frames = [transcode.decode_frame(path("examples_ybr_color.dcm"), i)[0] for i in range(3)]
        header = transcode.decode_frame(path("examples_ybr_color.dcm"), 0)[1]
        image = Image.open(io.BytesIO(render.render_frames(frames, header,
                                                           RenderOptions(media_type="image/gif"))))
        self.assertEqual(image.n_frames, 3)
        jpeg = _open(render.render_frames(frames, header, RenderOptions()))
        self.assertEqual(jpeg.format, "JPEG")
        self.assertEqual(jpeg.size, (320, 240))

    def test_unknown_format(self) -> None:
        with self.assertRaises(ValueError):
            render.render(self.arr, self.header, RenderOptions(media_type="image/tiff"))
