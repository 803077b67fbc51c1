"""Tests for the streaming multipart/related parser."""

from __future__ import annotations

import io
import os
import random
import resource

from twisted.trial.unittest import SynchronousTestCase

from dwdaemon.dicom.multipart_reader import (
    MEMMEM_MIN,
    MultipartError,
    MultipartParser,
    find_bytes,
    iter_file_parts,
    parse_content_type,
)


class ListSink:
    """Collects a part in memory."""

    def __init__(self, headers: dict[str, str], out: list) -> None:
        self.headers = headers
        self.chunks: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.out = out

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.chunks.append(bytes(data))

    def close(self) -> None:
        self.closed = True
        self.out.append((self.headers, b"".join(self.chunks)))

    def abort(self) -> None:
        self.aborted = True


def build(parts: list[tuple[dict[str, str], bytes]], boundary: bytes, preamble: bytes = b"",
          epilogue: bytes = b"", padding: bytes = b"") -> bytes:
    """Build a multipart body."""
    out = [preamble]
    for headers, body in parts:
        out.append(b"--" + boundary + padding + b"\r\n")
        for k, v in headers.items():
            out.append(f"{k}: {v}\r\n".encode("latin-1"))
        out.append(b"\r\n")
        out.append(body)
        out.append(b"\r\n")
    out.append(b"--" + boundary + b"--" + padding + b"\r\n")
    out.append(epilogue)
    return b"".join(out)


def parse(body: bytes, boundary: bytes, splits: list[int] | None = None,
          zero_copy: bool = False) -> list:
    """Parse ``body`` fed at the given split points."""
    out: list = []
    parser = MultipartParser(boundary, lambda h: ListSink(h, out), zero_copy=zero_copy)
    if splits is None:
        parser.feed(body)
    else:
        prev = 0
        for s in sorted(splits) + [len(body)]:
            parser.feed(body[prev:s])
            prev = s
    parser.close()
    return out


class ContentTypeTests(SynchronousTestCase):
    def test_quoted_any_order(self) -> None:
        for value in [
            'multipart/related; type="application/dicom"; boundary="abc; def"',
            'Multipart/Related;boundary="abc; def";type=application/dicom',
            'multipart/related ; boundary = "abc; def" ; TYPE="application/dicom"',
        ]:
            media, params = parse_content_type(value)
            self.assertEqual(media, "multipart/related")
            self.assertEqual(params["boundary"], "abc; def")
            self.assertEqual(params["type"], "application/dicom")

    def test_unquoted_and_escapes(self) -> None:
        media, params = parse_content_type(
            b'application/dicom; transfer-syntax=1.2.840.10008.1.2.1; x="a\\"b"; junk')
        self.assertEqual(media, "application/dicom")
        self.assertEqual(params, {"transfer-syntax": "1.2.840.10008.1.2.1", "x": 'a"b'})

    def test_empty(self) -> None:
        self.assertEqual(parse_content_type(None), ("", {}))
        self.assertEqual(parse_content_type(""), ("", {}))


class ParserTests(SynchronousTestCase):
    boundary = b"b0und4ry-X"

    def sample(self) -> list[tuple[dict[str, str], bytes]]:
        rnd = random.Random(7)
        return [
            ({"Content-Type": "application/dicom"}, b"first part"),
            ({"content-type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
              "Content-Length": "3000"}, bytes(rnd.getrandbits(8) for _ in range(3000))),
            ({}, b""),
            ({"CONTENT-TYPE": "application/octet-stream"}, b"\r\n--b0und4ry\r\n--b0und4ry-"),
            ({"Content-Type": "text/plain"}, b"\r\n"),
        ]

    def check(self, got: list, parts: list) -> None:
        self.assertEqual(len(got), len(parts))
        for (gh, gb), (h, b) in zip(got, parts, strict=True):
            self.assertEqual(gb, b)
            self.assertEqual(gh, {k.lower(): v for k, v in h.items()})

    def test_simple(self) -> None:
        parts = self.sample()
        self.check(parse(build(parts, self.boundary), self.boundary), parts)

    def test_preamble_epilogue_padding(self) -> None:
        parts = self.sample()
        for preamble in [b"\r\n", b"This is a preamble\r\n", b"pre --b0und4ry-Xnot\r\n",
                         b"\n\r\n"]:
            body = build(parts, self.boundary, preamble=preamble, epilogue=b"epilogue\r\n--x",
                         padding=b" \t ")
            self.check(parse(body, self.boundary), parts)

    def test_no_final_crlf(self) -> None:
        parts = self.sample()
        body = build(parts, self.boundary)
        self.assertTrue(body.endswith(b"--\r\n"))
        self.check(parse(body[:-2], self.boundary), parts)

    def test_header_folding_and_case(self) -> None:
        body = (b"--B\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2\r\n"
                b"X-A: 1\r\nx-a: 2\r\n\r\nbody\r\n--B--")
        got = parse(body, b"B")
        self.assertEqual(got[0][0], {"content-type": "application/dicom; transfer-syntax=1.2",
                                     "x-a": "1, 2"})
        self.assertEqual(got[0][1], b"body")

    def test_bare_lf_header_end(self) -> None:
        body = b"--B\nContent-Type: a/b\n\nbody\r\n--B--"
        got = parse(body, b"B")
        self.assertEqual(got, [({"content-type": "a/b"}, b"body")])

    def test_random_splits(self) -> None:
        parts = self.sample()
        body = build(parts, self.boundary, preamble=b"\r\n", epilogue=b"x")
        rnd = random.Random(1)
        for _ in range(300):
            n = rnd.randint(1, 40)
            splits = [rnd.randint(0, len(body)) for _ in range(n)]
            self.check(parse(body, self.boundary, splits), parts)

    def test_random_splits_zero_copy(self) -> None:
        parts = self.sample()
        body = build(parts, self.boundary, preamble=b"\r\n", epilogue=b"x")
        rnd = random.Random(11)
        for _ in range(300):
            splits = [rnd.randint(0, len(body)) for _ in range(rnd.randint(1, 40))]
            self.check(parse(body, self.boundary, splits, zero_copy=True), parts)
        self.check(parse(body, self.boundary, zero_copy=True), parts)

    def test_byte_by_byte(self) -> None:
        parts = self.sample()
        body = build(parts, self.boundary, preamble=b"pre\r\n")
        self.check(parse(body, self.boundary, list(range(len(body)))), parts)

    def test_fuzz_bodies(self) -> None:
        """Bodies made of boundary-like fragments parse the same whichever the splits."""
        rnd = random.Random(3)
        alphabet = [b"\r", b"\n", b"-", b"--", b"B", b"x", b"\r\n--B", b"\r\n--BB"]
        for _ in range(200):
            parts = []
            for _ in range(rnd.randint(1, 4)):
                payload = b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
                if b"\r\n--B" in payload.replace(b"\r\n--BB", b""):
                    continue
                if b"\r\n--B" in payload or payload.endswith(b"\r") or payload.startswith(b"--B"):
                    # "\r\n--BB" is a delimiter-prefix followed by garbage: not allowed
                    # inside a body; skip payloads that make the framing ambiguous.
                    continue
                parts.append(({"Content-Type": "a/b"}, payload))
            if not parts:
                continue
            body = build(parts, b"B")
            whole = parse(body, b"B")
            self.check(whole, parts)
            splits = [rnd.randint(0, len(body)) for _ in range(5)]
            self.check(parse(body, b"B", splits), parts)
            self.check(parse(body, b"B", splits, zero_copy=True), parts)

    def test_boundary_str(self) -> None:
        got: list = []
        p = MultipartParser("B", lambda h: ListSink(h, got))
        p.feed(b"--B\r\n\r\nx\r\n--B--")
        p.close()
        self.assertEqual(got, [({}, b"x")])
        self.assertEqual(p.parts, 1)
        self.assertTrue(p.done)

    def test_none_sink_discards(self) -> None:
        p = MultipartParser(b"B", lambda h: None)
        p.feed(b"--B\r\n\r\nx\r\n--B--")
        p.close()
        self.assertEqual(p.parts, 1)

    def test_find_agrees_with_bytes_find(self) -> None:
        """The memmem search of long buffers finds what ``bytes.find`` finds."""
        rnd = random.Random(3)
        needle = b"\r\n--" + self.boundary
        size = MEMMEM_MIN * 3
        for _ in range(30):
            data = bytearray(rnd.getrandbits(8) for _ in range(size))
            for _ in range(rnd.randrange(3)):
                at = rnd.randrange(size - len(needle))
                data[at:at + len(needle)] = needle
            buf = bytes(data)
            for start in (0, 1, rnd.randrange(size), size - MEMMEM_MIN, size - 5, size):
                self.assertEqual(find_bytes(buf, needle, start),
                                 buf.find(needle, start))

    def test_large_parts_random_splits(self) -> None:
        """Parts over MEMMEM_MIN (searched with memmem), fed in random pieces."""
        rnd = random.Random(11)
        parts = [({"Content-Type": "application/dicom"},
                  bytes(rnd.getrandbits(8) for _ in range(n)) + b"\r\n--" + self.boundary[:-1])
                 for n in (MEMMEM_MIN + 7, 3 * MEMMEM_MIN, 10)]
        body = build(parts, self.boundary)
        for zero_copy in (False, True):
            self.check(parse(body, self.boundary, zero_copy=zero_copy), parts)
            splits = [rnd.randrange(len(body)) for _ in range(4)]
            self.check(parse(body, self.boundary, splits, zero_copy), parts)

    def test_bad_boundary(self) -> None:
        self.assertRaises(ValueError, MultipartParser, b"", lambda h: None)
        self.assertRaises(ValueError, MultipartParser, b"x" * 201, lambda h: None)


class ErrorTests(SynchronousTestCase):
    def expect_error(self, body: bytes, boundary: bytes = b"B") -> MultipartError:
        got: list = []
        sinks: list[ListSink] = []

        def factory(h: dict[str, str]) -> ListSink:
            sinks.append(ListSink(h, got))
            return sinks[-1]

        p = MultipartParser(boundary, factory)
        try:
            p.feed(body)
            p.close()
        except MultipartError as e:
            # Once failed, the parser keeps failing.
            self.assertRaises(MultipartError, p.feed, b"x")
            self.assertRaises(MultipartError, p.close)
            self.sinks = sinks
            return e
        self.fail("no MultipartError")

    def test_empty(self) -> None:
        self.assertIn("no multipart boundary", str(self.expect_error(b"")))

    def test_garbage(self) -> None:
        data = random.Random(5).randbytes(100_000)
        self.expect_error(data)

    def test_no_parts(self) -> None:
        self.assertIn("no part", str(self.expect_error(b"--B--\r\n")))
        self.assertIn("no part", str(self.expect_error(b"\r\n--B--")))

    def test_truncated(self) -> None:
        body = build([({"Content-Type": "a/b"}, b"x" * 1000)], b"B")
        for cut in [5, 20, 500, len(body) - 8, len(body) - 3]:
            e = self.expect_error(body[:cut])
            self.assertTrue("truncated" in str(e) or "closing" in str(e), str(e))
        self.expect_error(body[:500])
        # The open part's sink was aborted, not closed.
        self.assertTrue(self.sinks[-1].aborted)
        self.assertFalse(self.sinks[-1].closed)

    def test_missing_closing_boundary(self) -> None:
        e = self.expect_error(b"--B\r\nContent-Type: a/b\r\n\r\nbody\r\n")
        self.assertIn("closing", str(e))
        self.expect_error(b"--B\r\nContent-Type: a/b\r\n\r\nbody\r\n--B\r\n")

    def test_garbage_after_boundary(self) -> None:
        self.expect_error(b"--B\r\n\r\nbody\r\n--Bxyz\r\n")

    def test_headers_too_large(self) -> None:
        e = self.expect_error(b"--B\r\nX: " + b"a" * 100_000)
        self.assertIn("too large", str(e))

    def test_malformed_header(self) -> None:
        self.expect_error(b"--B\r\nnot a header\r\n\r\nx\r\n--B--")


class StreamingTests(SynchronousTestCase):
    def test_huge_part_constant_memory(self) -> None:
        """A 200 MB part streams through without the parser buffering it."""

        class CountSink:
            size = 0
            max_chunk = 0

            def write(self, data: bytes) -> None:
                self.size += len(data)
                self.max_chunk = max(self.max_chunk, len(data))

            def close(self) -> None:
                pass

        sinks: list[CountSink] = []
        p = MultipartParser(b"bnd", lambda h: sinks.append(CountSink()) or sinks[-1])
        chunk = os.urandom(1 << 20).replace(b"\r", b"x")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        p.feed(b"--bnd\r\nContent-Type: application/octet-stream\r\n\r\n")
        for _ in range(200):
            p.feed(chunk)
            self.assertLess(len(p._buf), 16)  # noqa: SLF001 - white-box: the parser's buffer stays small
        p.feed(b"\r\n--bnd--\r\n")
        p.close()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.assertEqual(sinks[0].size, 200 << 20)
        self.assertLessEqual(sinks[0].max_chunk, (1 << 20) + 16)
        self.assertLess(after - before, 50 * 1024)  # KiB

    def test_iter_file_parts(self) -> None:
        parts = [({"Content-Type": "a/b"}, os.urandom(5000)) for _ in range(7)]
        body = build(parts, b"zz", preamble=b"\r\n")

        class BytesSink(io.BytesIO):
            def __init__(self, headers: dict[str, str]) -> None:
                super().__init__()
                self.headers = headers

            def close(self) -> None:
                self.value = self.getvalue()

        seen = []
        for headers, sink in iter_file_parts(io.BytesIO(body), b"zz", BytesSink, chunk_size=777):
            seen.append((headers, sink.value))
        self.assertEqual([b for _, b in seen], [b for _, b in parts])
        self.assertEqual(seen[0][0], {"content-type": "a/b"})

    def test_iter_file_parts_truncated(self) -> None:
        parts = [({"Content-Type": "a/b"}, b"p%d" % i) for i in range(3)]
        body = build(parts, b"zz")[:-9]  # drop the closing boundary
        seen = []

        class S(list):
            def __init__(self, h: dict[str, str]) -> None:
                super().__init__()

            def write(self, d: bytes) -> None:
                self.append(d)

            def close(self) -> None:
                pass

        def consume() -> None:
            for _, sink in iter_file_parts(io.BytesIO(body), b"zz", S):
                seen.append(b"".join(sink))

        self.assertRaises(MultipartError, consume)
        self.assertEqual(seen, [b"p0", b"p1"])
