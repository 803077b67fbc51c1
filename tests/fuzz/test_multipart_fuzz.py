"""The multipart reader: random boundaries, headers, bodies, splits and mutations."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.multipart_reader import MultipartError, MultipartParser
from tests.fuzz.support import PROFILE, counted

BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
boundaries = st.text(alphabet=BCHARS, min_size=1, max_size=70).filter(lambda b: b[-1] != " ")
header_names = st.sampled_from(["Content-Type", "Content-Location", "Content-ID",
                                "Content-Length", "X-Other"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                        max_size=40).map(str.strip)
headers = st.dictionaries(header_names, header_values, max_size=3)
bodies = st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"--", b"\r\n--", b"-\r\n"])


class Sink(list):
    def write(self, data: Any) -> None:
        self.append(bytes(data))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def body_of(boundary: str, parts: list[tuple[dict[str, str], bytes]], preamble: bytes,
            epilogue: bytes) -> bytes:
    bnd = boundary.encode()
    out = [preamble + (b"\r\n" if preamble else b"")]
    for hdrs, data in parts:
        out.append(b"--" + bnd + b"\r\n")
        out += [f"{k}: {v}\r\n".encode() for k, v in hdrs.items()]
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--" + bnd + b"--" + epilogue)
    return b"".join(out)


def feed(parser: MultipartParser, data: bytes, cuts: list[int]) -> None:
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        parser.feed(data[last:cut])
        last = cut
    parser.close()


class MultipartPropertyTests(SynchronousTestCase):
    @PROFILE
    @given(boundaries, st.lists(st.tuples(headers, bodies), min_size=1, max_size=4),
           st.sampled_from([b"", b"preamble text"]),
           st.sampled_from([b"", b"\r\n", b"\r\nepilogue\r\n"]),
           st.lists(st.integers(min_value=0, max_value=5000), max_size=8))
    @counted
    def test_valid_bodies_in_any_split(self, boundary: str, parts: Any, preamble: bytes,
                                       epilogue: bytes, cuts: list[int]) -> None:
        """A well-formed body gives back its parts, whatever the read sizes."""
        delim = b"\r\n--" + boundary.encode()
        for _, data in parts:
            assume(delim not in b"\r\n" + data + b"\r\n")
        assume(b"--" + boundary.encode() not in preamble)
        got: list[tuple[dict[str, str], Sink]] = []

        def on_part(h: dict[str, str]) -> Sink:
            sink = Sink()
            got.append((h, sink))
            return sink

        parser = MultipartParser(boundary, on_part)
        feed(parser, body_of(boundary, parts, preamble, epilogue), cuts)
        self.assertEqual([b"".join(s) for _, s in got], [d for _, d in parts])
        for (h, _), (want, _) in zip(got, parts, strict=True):
            self.assertEqual({k.lower(): v for k, v in h.items()},
                             {k.lower(): v for k, v in want.items()})

    @PROFILE
    @given(st.text(max_size=300), st.binary(max_size=2000),
           st.lists(st.integers(min_value=0, max_value=5000), max_size=8))
    @counted
    def test_garbage_is_a_multipart_error(self, boundary: str, data: bytes,
                                          cuts: list[int]) -> None:
        """Any boundary and any bytes: parts, or MultipartError; nothing else."""
        try:
            parser = MultipartParser(boundary.encode("utf-8"), lambda h: Sink())
            feed(parser, data, cuts)
        except MultipartError:
            pass

    @PROFILE
    @given(boundaries, st.lists(st.tuples(headers, bodies), min_size=1, max_size=3),
           st.data())
    @counted
    def test_mutated_bodies(self, boundary: str, parts: Any, data: st.DataObject) -> None:
        """Truncated, bit-flipped or spliced bodies: parts or MultipartError."""
        body = bytearray(body_of(boundary, parts, b"", b""))
        op = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = data.draw(st.integers(min_value=0, max_value=len(body)))
        if op == "truncate":
            del body[at:]
        elif op == "flip" and at < len(body):
            body[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif op == "insert":
            body[at:at] = data.draw(st.sampled_from([b"\r\n", b"--", b"\r\n--" + boundary.encode(),
                                                     b"\n", b"\r", b"\x00" * 70]))
        else:
            del body[at:at + data.draw(st.integers(min_value=1, max_value=20))]
        with contextlib.suppress(MultipartError):
            feed(MultipartParser(boundary, lambda h: Sink()), bytes(body),
                 data.draw(st.lists(st.integers(min_value=0, max_value=5000), max_size=4)))

    @PROFILE
    @given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=2000))
    @counted
    def test_part_header_blocks(self, block: str) -> None:
        """Any part header block: parsed headers or MultipartError."""
        raw = block.encode("latin-1")
        body = b"--b\r\n" + raw + b"\r\n\r\nx\r\n--b--"
        with contextlib.suppress(MultipartError):
            feed(MultipartParser("b", lambda h: Sink()), body, [])
