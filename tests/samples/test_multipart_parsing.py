"""The streaming multipart parser of samples/python/wado_stream.py, fed in every chunking."""

from __future__ import annotations

import importlib.util
import os

from twisted.trial import unittest

from .support import PYTHON_SAMPLES


def load_sample(name: str):
    """Import ``samples/python/{name}.py`` as a module (the samples are not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"sample_{name}", os.path.join(PYTHON_SAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wado_stream = load_sample("wado_stream")

BODY = (b"preamble, ignored\r\n"
        b"--BND\r\nContent-Type: application/dicom\r\nContent-Location: /a\r\n\r\n"
        b"first\r\n--BN not the boundary\r\n"
        b"--BND \t\r\nContent-Type: application/dicom\r\n\r\n"
        b"\r\n--BND\r\n\r\nno headers\r\n"
        b"--BND--\r\nepilogue, ignored")
EXPECTED = [
    ({"content-type": "application/dicom", "content-location": "/a"},
     b"first\r\n--BN not the boundary"),
    ({"content-type": "application/dicom"}, b""),
    ({}, b"no headers"),
]


class StreamingParts(unittest.TestCase):
    def test_every_chunk_size(self):
        """Parts, headers and bodies do not depend on where the chunks are cut."""
        for size in range(1, len(BODY) + 1):
            chunks = [BODY[i:i + size] for i in range(0, len(BODY), size)]
            self.assertEqual(list(wado_stream.parts(chunks, "BND")), EXPECTED, size)

    def test_parts_come_before_the_end_of_the_stream(self):
        """A part is yielded once its closing delimiter arrives, not at the end of the body."""
        line = b"--BND \t\r\n"
        cut = BODY.index(line) + len(line)  # the end of the first part's closing delimiter
        received: list[int] = []

        def chunks():
            yield BODY[:cut]
            received.append(1)
            yield BODY[cut:]

        stream = wado_stream.parts(chunks(), "BND")
        self.assertEqual(next(stream), EXPECTED[0])
        self.assertEqual(received, [])  # the second chunk was not needed yet
        self.assertEqual(list(stream), EXPECTED[1:])

    def test_truncated_stream(self):
        """A stream without its closing delimiter is an error, after the complete parts."""
        stream = wado_stream.parts([BODY[:BODY.index(b"--BND--")]], "BND")
        self.assertEqual([next(stream) for _ in range(2)], EXPECTED[:2])
        self.assertRaises(ValueError, list, stream)

    def test_boundary_of(self):
        self.assertEqual(wado_stream.boundary_of(
            'multipart/related; type="application/dicom"; boundary="a b"'), "a b")
        self.assertRaises(ValueError, wado_stream.boundary_of, "application/dicom")
