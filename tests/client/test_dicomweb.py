"""Tests of dwdaemon.client.dicomweb against small twisted.web fakes of a remote server."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

from pydicom.data import get_testdata_file
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, inlineCallbacks, succeed
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.client import HTTPConnectionPool

from dwdaemon.client.dicomweb import (
    DicomWebClient,
    StowItem,
    build_url,
    plan_stow_chunks,
)
from dwdaemon.client.http import HttpOptions, RemoteError, make_http_client
from dwdaemon.dicom import multipart
from dwdaemon.dicom.multipart_reader import MultipartParser, parse_content_type

CT = get_testdata_file("CT_small.dcm", download=False)
MR = get_testdata_file("MR_small.dcm", download=False)


@dataclass(frozen=True)
class Srv:
    name: str = "remote"
    url: str = ""
    username: str | None = None
    password: str | None = None
    certificate_file: str | None = None
    certificate_key_file: str | None = None
    certificate_key_password: str | None = None
    http_headers: dict = field(default_factory=dict)
    timeout: float | None = None
    has_delete: bool = False


class FakeStow(resource.Resource):
    """Parses STOW bodies; refuses SOP UIDs listed in ``refuse``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict] = []
        self.refuse: set[str] = set()
        self.fail_after: int | None = None

    def render_POST(self, request):
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain")
            return b"disk full"
        media, params = parse_content_type(request.getHeader(b"content-type"))
        parts: list[bytes] = []

        class Sink(list):
            def write(self, data):
                self.append(data)

            def close(self):
                parts.append(b"".join(self))

        parser = MultipartParser(params["boundary"], lambda h: Sink())
        parser.feed(request.content.read())
        parser.close()
        self.requests.append(
            {"media": media, "type": params.get("type"), "parts": parts,
             "auth": request.getHeader(b"authorization"), "x": request.getHeader(b"x-custom")}
        )
        import io

        import pydicom

        ok, bad = [], []
        for p in parts:
            uid = pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID
            (bad if uid in self.refuse else ok).append(uid)
        answer = {}
        if ok:
            answer["00081199"] = {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": [u]}} for u in ok]}
        if bad:
            answer["00081198"] = {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": [u]},
                 "00081197": {"vr": "US", "Value": [272]}} for u in bad]}
        request.setResponseCode(409 if bad and not ok else (202 if bad else 200))
        request.setHeader(b"content-type", b"application/dicom+json")
        return json.dumps(answer).encode()


class FakeWado(resource.Resource):
    """Answers WADO-RS with multipart bodies built from files, or broken variants."""

    isLeaf = True

    def __init__(self, files: list[str]) -> None:
        super().__init__()
        self.files = files
        self.mode = "ok"
        self.accept: list[bytes] = []

    def render_GET(self, request):
        self.accept.append(request.getHeader(b"accept"))
        if request.path.startswith(b"/studies") is False:
            request.setResponseCode(404)
            return b"{}"
        payloads = []
        for f in self.files:
            with open(f, "rb") as fp:
                payloads.append(("application/dicom", fp.read()))
        boundary = "BOUNDARY"
        if self.mode == "status":
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain")
            return b"overloaded, try later"
        if self.mode == "nonmultipart":
            request.setHeader(b"content-type", b"application/dicom")
            return payloads[0][1]
        if self.mode == "nondicom":
            payloads.insert(1, ("text/plain", b"hello"))
        if self.mode == "garbage":
            payloads.insert(1, ("application/dicom", b"this is not DICOM at all" * 10))
        body = multipart.build(boundary, payloads)
        if self.mode == "malformed":
            body = body[: -len(multipart.closing(boundary)) - 10]
        request.setHeader(
            b"content-type",
            multipart.content_type(boundary, "application/dicom").encode(),
        )
        if self.mode == "truncated":
            request.setHeader(b"content-length", str(len(body) + 1000).encode())
            request.write(body)
            reactor.callLater(0.05, request.channel.transport.abortConnection)
            return server.NOT_DONE_YET
        return body


class FakeTarget:
    """An ingest target that checks the DICM preamble and remembers what it got."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.stored: list[bytes] = []
        self.count = 0

    def new_temp(self):
        self.count += 1
        path = os.path.join(self.directory, f"part{self.count}.tmp")
        return path, open(path, "wb")

    def ingest_path(self, path):
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        if data[128:132] != b"DICM":
            raise ValueError("no DICM preamble")
        self.stored.append(data)
        return succeed(f"id{len(self.stored)}")


class DicomWebClientTests(unittest.TestCase):
    def setUp(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        root = resource.Resource()
        self.stow = FakeStow()
        self.wado = FakeWado([CT, MR])
        studies = resource.Resource()
        root.putChild(b"dicom-web", studies)
        self.root = root
        self.port = reactor.listenTCP(0, server.Site(_Dispatch(self.stow, self.wado)),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}/dicom-web/"
        self.tmp = tempfile.mkdtemp(prefix="dwd-client-")

    def client(self, **kw) -> DicomWebClient:
        limits = {k: kw.pop(k) for k in ("stow_max_instances", "stow_max_size") if k in kw}
        srv = Srv(url=self.base, **kw)
        http = make_http_client(reactor, HttpOptions(timeout=5), srv, self.pool)
        return DicomWebClient(reactor, srv, HttpOptions(timeout=5), http, **limits)

    def items(self, n: int) -> list[StowItem]:
        import pydicom

        out = []
        for i in range(n):
            ds = pydicom.dcmread(CT if i % 2 == 0 else MR)
            ds.SOPInstanceUID = f"1.2.3.{i}"
            path = os.path.join(self.tmp, f"in{i}.dcm")
            ds.save_as(path)
            out.append(StowItem(path, os.path.getsize(path), ds.SOPInstanceUID, f"i{i}"))
        return out

    def test_build_url(self):
        base = "http://h/dicom-web/"
        self.assertEqual(build_url(base, "/studies"), base + "studies")
        self.assertEqual(
            build_url(base, "/studies", {"00100010": "*JODOGNE*", "limit": 2}),
            base + "studies?00100010=%2AJODOGNE%2A&limit=2",
        )
        self.assertEqual(build_url(base, "studies?a=1", {"b": "x y"}),
                         base + "studies?a=1&b=x%20y")
        self.assertEqual(build_url(base, "/a b"), base + "a%20b")
        self.assertRaises(ValueError, build_url, base, "http://evil/")

    def test_plan_chunks(self):
        items = [StowItem(str(i), 400 * 1024) for i in range(10)]
        self.assertEqual([len(c) for c in plan_stow_chunks(items, 3, 0)], [3, 3, 3, 1])
        self.assertEqual([len(c) for c in plan_stow_chunks(items, 0, 1)], [2] * 5)
        self.assertEqual([len(c) for c in plan_stow_chunks(items, 0, 0)], [10])
        big = [StowItem("b", 5 << 20), StowItem("s", 1)]
        self.assertEqual([len(c) for c in plan_stow_chunks(big, 0, 1)], [1, 1])

    @inlineCallbacks
    def test_stow_chunked_with_auth_and_headers(self):
        items = self.items(5)
        progress = []
        c = self.client(username="u", password="p", http_headers={"X-Custom": "yes"},
                        stow_max_instances=2)
        out = yield c.stow(items, on_progress=lambda a, b: progress.append((a, b)))
        self.assertEqual(out.requests, 3)
        self.assertEqual(len(self.stow.requests), 3)
        self.assertEqual([len(r["parts"]) for r in self.stow.requests], [2, 2, 1])
        self.assertEqual(self.stow.requests[0]["type"], "application/dicom")
        self.assertEqual(self.stow.requests[0]["auth"], b"Basic dTpw")
        self.assertEqual(self.stow.requests[0]["x"], b"yes")
        with open(items[0].path, "rb") as f:
            self.assertEqual(self.stow.requests[0]["parts"][0], f.read())
        self.assertEqual(progress[-1], (5, 5))
        self.assertEqual(out.to_json()["Stored"], 5)

    @inlineCallbacks
    def test_stow_refused_counted(self):
        items = self.items(3)
        self.stow.refuse = {"1.2.3.1"}
        out = yield self.client().stow(items)
        self.assertEqual(out.to_json()["Failed"], 1)
        self.assertEqual(out.failed[0]["SOPInstanceUID"], "1.2.3.1")
        self.assertEqual(out.failed[0]["FailureReason"], 272)
        self.assertEqual(len(out.sent), 2)

    @inlineCallbacks
    def test_stow_remote_error_keeps_counts(self):
        items = self.items(3)
        self.stow.fail_after = 1
        c = self.client(stow_max_instances=2)
        exc = yield self.assertFailure(c.stow(items), RemoteError)
        self.assertIn("'remote': STOW-RS answered HTTP 500", str(exc))
        self.assertIn("disk full", str(exc))
        self.assertEqual(exc.outcome.to_json()["Stored"], 2)
        self.assertEqual(exc.outcome.requests, 2)

    @inlineCallbacks
    def test_retrieve_stores_each_part(self):
        target = FakeTarget(self.tmp)
        seen = []
        c = self.client()
        out = yield c.retrieve([{"Study": "1.2"}], target,
                               on_instance=lambda o: seen.append(len(o.instances)))
        self.assertEqual(out.instances, ["id1", "id2"])
        self.assertEqual(seen, [1, 2])
        with open(CT, "rb") as f:
            self.assertEqual(target.stored[0], f.read())
        self.assertIn(b"transfer-syntax=*", self.wado.accept[0])

    @inlineCallbacks
    def failing_retrieve(self, mode: str, expected: str):
        self.wado.mode = mode
        target = FakeTarget(self.tmp)
        exc = yield self.assertFailure(
            self.client().retrieve([{"Study": "1.2"}], target), RemoteError)
        self.assertIn("'remote'", str(exc))
        self.assertIn(expected, str(exc))
        leftovers = [f for f in os.listdir(self.tmp) if f.endswith(".tmp")]
        self.assertEqual(leftovers, [])
        return exc

    @inlineCallbacks
    def test_retrieve_non_dicom_part(self):
        exc = yield self.failing_retrieve("nondicom", "non-DICOM part (Content-Type text/plain)")
        self.assertEqual(exc.outcome.instances, ["id1"])

    @inlineCallbacks
    def test_retrieve_garbage_part(self):
        exc = yield self.failing_retrieve("garbage", "not a valid DICOM instance")
        self.assertEqual(exc.outcome.instances, ["id1"])

    def test_retrieve_malformed(self):
        return self.failing_retrieve("malformed", "malformed multipart")

    def test_retrieve_not_multipart(self):
        return self.failing_retrieve("nonmultipart", "not multipart/related")

    @inlineCallbacks
    def test_retrieve_status(self):
        exc = yield self.failing_retrieve("status", "HTTP 503")
        self.assertIn("overloaded", str(exc))
        self.assertEqual(exc.status, 503)

    def test_retrieve_truncated(self):
        return self.failing_retrieve("truncated", "connection closed")

    @inlineCallbacks
    def test_qido(self):
        answer = yield self.client().qido("/stow-echo")
        self.assertEqual(answer, [])

    @inlineCallbacks
    def test_cancel_retrieve(self):
        self.wado.mode = "truncated"
        d = self.client().retrieve([{"Study": "1.2"}], FakeTarget(self.tmp))
        reactor.callLater(0, d.cancel)
        yield self.assertFailure(d, CancelledError)


class _Dispatch(resource.Resource):
    isLeaf = True

    def __init__(self, stow, wado):
        super().__init__()
        self.stow, self.wado = stow, wado

    def render(self, request):
        request.path = request.path[len(b"/dicom-web"):]
        if request.method == b"POST":
            return self.stow.render_POST(request)
        if request.path == b"/stow-echo":
            request.setHeader(b"content-type", b"application/dicom+json")
            return b"[]"
        return self.wado.render_GET(request)
